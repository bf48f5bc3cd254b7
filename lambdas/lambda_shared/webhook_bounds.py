"""What a request from Twilio (message webhook or status callback) may cost before its
signature is checked: bounds that compute nothing, so a forged request costs no secret read
and no HMAC beyond them."""

from __future__ import annotations

import re

MAX_BODY_BYTES = 64 * 1024
"""Largest form body accepted, checked before anything is parsed or signed.

Twilio's incoming-message webhook is a few KB: a 1,600-character Body is at most ~19 KB
even when every character is a percent-encoded 4-byte UTF-8 sequence (12 bytes each), and
10 media URLs plus every optional field add ~3 KB; a status callback is under 2 KB. 64 KiB
leaves 3x headroom, while a forged multi-MB body, hashed once per candidate URL, could
outlast the Lambda's timeout."""
MAX_BASE64_BODY_CHARACTERS = 4 * -(-MAX_BODY_BYTES // 3)
"""base64 of n bytes has 4 * ceil(n / 3) characters: a longer encoded body is too large."""
MAX_FIELDS = 200
"""More form fields than Twilio ever sends: beyond this the body is rejected unparsed."""
MAX_QUERY_PARAMETERS = 4
"""Query parameters on the webhook URL: every order is tried (4! = 24 orders), so more
would multiply the HMACs a forged request costs (5! = 120, 6! = 720...): beyond, 400."""
SIGNATURE = re.compile(r"[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=")
"""X-Twilio-Signature: base64 of a 20-byte HMAC-SHA1 digest, 28 characters. 160 bits fill
26 characters and 4 bits of the 27th (its 2 low bits are 0), then one `=` of padding."""


def is_signature_shaped(value: str) -> bool:
    """True if `value` can be an X-Twilio-Signature (checked before any HMAC)."""
    return SIGNATURE.fullmatch(value) is not None
