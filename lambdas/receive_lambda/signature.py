"""Twilio's `X-Twilio-Signature`, checked against the URLs Twilio may have signed."""

from __future__ import annotations

import itertools
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from twilio.request_validator import RequestValidator

from receive_lambda.errors import Forbidden
from receive_lambda.event import MAX_QUERY_PARAMETERS, WebhookRequest

_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=")
"""X-Twilio-Signature: base64 of a 20-byte HMAC-SHA1 digest, 28 characters. 160 bits fill
26 characters and 4 bits of the 27th (its 2 low bits are 0), then one `=` of padding."""


# How the query string of the configured webhook URL may have been written. API Gateway hands
# the template decoded values, so the original spelling is gone: these are the spellings
# people and tools produce (RFC 3986 minimal, everything-escaped, HTML form style).
_QUERY_ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda s: urllib.parse.quote(s, safe="!$'()*,/:;=?@~"),
    lambda s: urllib.parse.quote(s, safe=""),
    lambda s: urllib.parse.quote_plus(s, safe=""),
)
MAX_CANDIDATE_URLS = math.factorial(MAX_QUERY_PARAMETERS) * len(_QUERY_ENCODINGS)
"""Most URLs a request's signature is checked against (24 orders x 3 spellings = 72)."""


def candidate_urls(domain: str, path: str, query: Sequence[tuple[str, str]]) -> Iterator[str]:
    """The URLs Twilio may have signed, most likely first.

    `https://{$context.domainName}{$context.path}` is the URL as called: on the
    execute-api domain the path starts with the stage, behind a custom domain with the base
    path (never the stage). A query string comes back decoded and unordered, so each
    spelling and each order is tried: at most `MAX_CANDIDATE_URLS` URLs, as `parse_event`
    admits at most `MAX_QUERY_PARAMETERS` parameters (ValueError beyond).
    """
    if len(query) > MAX_QUERY_PARAMETERS:
        raise ValueError(f"more than {MAX_QUERY_PARAMETERS} query parameters")
    base = f"https://{domain}{path}"
    if not query:
        yield base
        return
    seen: set[str] = set()
    for order in itertools.permutations(query):
        for encode in _QUERY_ENCODINGS:
            url = base + "?" + "&".join(f"{encode(k)}={encode(v)}" for k, v in order)
            if url not in seen:
                seen.add(url)
                yield url


def signature_is_valid(request: WebhookRequest, auth_token: str) -> bool:
    """True if `X-Twilio-Signature` signs one of the candidate URLs and every parameter.

    Computes at most 2 HMACs (twilio tries the URL with and without its port) per candidate
    URL, over the URL and the form (at most `MAX_BODY_BYTES`).
    """
    if not _SIGNATURE.fullmatch(request.signature) or not auth_token:
        return False  # not an HMAC-SHA1 signature: no need to compute any
    validator = RequestValidator(auth_token)
    return any(
        validator.validate(url, request.form, request.signature)
        for url in candidate_urls(request.domain, request.path, request.query)
    )


class TokenSource(Protocol):
    """Where the Twilio auth token comes from (cached; refreshable after a rotation)."""

    def current(self) -> str:
        """The cached token; raises MissingCredentials if the secret is not filled in."""
        ...

    def refreshed(self) -> str | None:
        """A freshly fetched token, or None when one was fetched too recently."""
        ...


def authenticate(request: WebhookRequest, tokens: TokenSource) -> None:
    """Raises Forbidden unless the request is signed with the (possibly rotated) token."""
    if not request.signature:
        # Nothing to check, and no reason to read the secret again.
        raise Forbidden("missing X-Twilio-Signature")
    if not _SIGNATURE.fullmatch(request.signature):
        # A wrong signature (403), found without reading the secret or computing any HMAC.
        raise Forbidden("X-Twilio-Signature is not an HMAC-SHA1 signature (28 base64 characters)")
    token = tokens.current()
    if signature_is_valid(request, token):
        return
    # The token may have been rotated since it was cached: fetch it again (rate-limited,
    # so forged requests cannot hammer Secrets Manager) and retry once.
    fresh = tokens.refreshed()
    if fresh is not None and fresh != token and signature_is_valid(request, fresh):
        return
    raise Forbidden("invalid X-Twilio-Signature")
