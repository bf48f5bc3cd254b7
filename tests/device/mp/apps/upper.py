# An app delivered by an over-the-air update in the tests: answers in capitals.
# The text below makes the compiled file span two 1,024-byte blocks.
ABOUT = (
    "Hello! This board was updated over the air and now answers in capitals. "
    "It learned of the job on its MQTT session, with no second TLS session. "
    "AWS IoT Jobs told it where the file was: a stream, with a file id, a size "
    "and a SHA-256 for each module. The board checked that the job was its own, "
    "that every name was a plain module name and that the files fit its flash. "
    "Then it asked for the file one block at a time, 1,024 bytes per block, so "
    "that each message, base64 and JSON included, stayed far below the 5,000 "
    "bytes its TLS stack can take in one record. Each block went straight to a "
    "file beside the old app and into the hash; nothing bigger than one block "
    "was ever held in memory. When the last block had arrived, the length and "
    "the hash were compared with the job document. They matched, so the board "
    "wrote its journal, renamed the old app aside and the new one into place, "
    "and restarted. A power cut at any of those steps would have left either "
    "the old app or this one, never half of each. After the restart this app "
    "was on probation: had it failed to import, or failed on its first "
    "message, the board would have put the old app back by itself and told "
    "AWS IoT that the job failed, and why. It answered, so the job succeeded."
)


def handle(message):
    """Answer with the body upper-cased; "about" tells how this app arrived."""
    if message["Body"].strip().lower() == "about":
        return ABOUT
    return message["Body"].upper()
