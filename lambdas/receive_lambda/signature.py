"""Twilio's `X-Twilio-Signature`, checked against the URLs Twilio may have signed."""

from __future__ import annotations

import itertools
import math
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from twilio.request_validator import RequestValidator

from lambda_shared.webhook_bounds import MAX_QUERY_PARAMETERS, is_signature_shaped
from receive_lambda.errors import Forbidden
from receive_lambda.event import WebhookRequest

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
    if not is_signature_shaped(request.signature) or not auth_token:
        return False  # not an HMAC-SHA1 signature: no need to compute any
    validator = RequestValidator(auth_token)
    return any(
        validator.validate(url, request.form, request.signature)
        for url in candidate_urls(request.domain, request.path, request.query)
    )


class TokenSource(Protocol):
    """Where the Twilio auth tokens come from (cached; refreshable after a rotation): the
    primary and, while a rotation is under way, the secondary."""

    def current(self) -> tuple[str, ...]:
        """The cached tokens; raises MissingCredentials if the secret is not filled in."""
        ...

    def refreshed(self) -> tuple[str, ...] | None:
        """Freshly fetched tokens, or None when they were fetched too recently."""
        ...


def authenticate(request: WebhookRequest, tokens: TokenSource) -> None:
    """Raises Forbidden unless the request is signed with one of the (possibly rotated)
    tokens."""
    if not request.signature:
        # Nothing to check, and no reason to read the secret again.
        raise Forbidden("missing X-Twilio-Signature")
    if not is_signature_shaped(request.signature):
        # A wrong signature (403), found without reading the secret or computing any HMAC.
        raise Forbidden("X-Twilio-Signature is not an HMAC-SHA1 signature (28 base64 characters)")
    cached = tokens.current()
    if any(signature_is_valid(request, token) for token in cached):
        return
    # The tokens may have been rotated since they were cached: fetch them again
    # (rate-limited, so forged requests cannot hammer Secrets Manager) and retry once.
    fresh = tokens.refreshed()
    if fresh is not None and any(
        signature_is_valid(request, token) for token in fresh if token not in cached
    ):
        return
    raise Forbidden("invalid X-Twilio-Signature")
