# The app: decides what an incoming SMS does and what to answer. Change this
# file to make the board do something else (see device/README.md).
from smstext import reverse


def handle(message):
    """Answer an incoming message; return None, a reply body (str) or a dict.

    message: {"Id", "From", "To", "Body", "Media": [{"Url", "ContentType"}]}.
    A dict reply may carry "Body" and "MediaUrl". The default app texts the
    body back reversed and answers an MMS with its first picture.
    """
    body = reverse(message["Body"])
    media = message["Media"]
    if media:
        return {"Body": body, "MediaUrl": media[0]["Url"]}
    return body
