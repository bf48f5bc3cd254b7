# An app delivered by an over-the-air update in the tests: answers in capitals.
# The greeting table makes the compiled file span several 1,024-byte blocks.
GREETINGS = (
    "Hello! This board was updated over the air and now answers in capitals. "
    "It learned of the job on its MQTT session, fetched this file in blocks, "
    "checked its length and SHA-256, switched atomically and restarted. "
) * 8


def handle(message):
    """Answer with the body upper-cased."""
    return message["Body"].upper()
