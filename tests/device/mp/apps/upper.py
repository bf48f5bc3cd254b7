# An app delivered by an over-the-air update in the tests: answers in capitals.
# The text below makes the compiled file span several 1,024-byte blocks.
ABOUT = (
    "Hello! This board was updated over the air and now answers in capitals. "
    "It learned of the job on its MQTT session, with no second TLS session. "
    "It fetched this file in blocks small enough for its TLS record limit. "
    "It checked the file's length and SHA-256 against the job document. "
    "It switched atomically, so a power cut would leave the old or the new app. "
    "It restarted and ran this app on probation before reporting success. "
    "Hello! This board was updated over the air and now answers in capitals. "
    "It learned of the job on its MQTT session, with no second TLS session. "
    "It fetched this file in blocks small enough for its TLS record limit. "
    "It checked the file's length and SHA-256 against the job document. "
    "It switched atomically, so a power cut would leave the old or the new app. "
    "It restarted and ran this app on probation before reporting success. "
    "Hello! This board was updated over the air and now answers in capitals. "
    "It learned of the job on its MQTT session, with no second TLS session. "
    "It fetched this file in blocks small enough for its TLS record limit. "
    "It checked the file's length and SHA-256 against the job document. "
    "It switched atomically, so a power cut would leave the old or the new app. "
    "It restarted and ran this app on probation before reporting success. "
)


def handle(message):
    """Answer with the body upper-cased; "about" tells how this app arrived."""
    if message["Body"].strip().lower() == "about":
        return ABOUT[:1600]
    return message["Body"].upper()
