# An app that imports fine but fails on its first message: rolled back.


def handle(message):
    """Reads a field the contract does not have: KeyError on every message."""
    return message["Text"].upper()
