"""The twilio library's own client, with every request sent to loopback (Prism or a proxy).

Only the transport differs from production: the send Lambda's real code builds its
requests, and Prism checks them against Twilio's contract.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

# Prism checks the path parameters' patterns, so test credentials must look real.
TEST_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TEST_AUTH_TOKEN = "test-auth-token"  # noqa: S105 - a fake, only ever sent to loopback


def bracket_form_arrays(data: dict[str, object] | None) -> dict[str, object] | None:
    """Renames list-valued form fields `MediaUrl` to `MediaUrl[]`.

    The twilio library sends an array as repeated keys (`MediaUrl=a&MediaUrl=b`), which
    Twilio accepts; Prism parses form arrays only in bracket style and answers 422
    otherwise. Only the transport used against Prism does this, never production code.
    """
    if not data:
        return data
    return {f"{key}[]" if isinstance(value, list) else key: value for key, value in data.items()}


class LoopbackHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """A TwilioHttpClient that sends every request to `base_url` (Prism or a proxy of it).

    The scheme and host of Twilio's URLs (`https://api.twilio.com/...`) are replaced, the
    path and query are kept, and form arrays are written the way Prism reads them.
    """

    def __init__(self, base_url: str, *, timeout: float | None = 5.0) -> None:
        super().__init__(timeout=timeout)
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._netloc = parts.scheme, parts.netloc

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Sends the request to the loopback server instead of Twilio."""
        parts = urlsplit(url)
        local = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, ""))
        return super().request(
            method,
            local,
            params=params,
            data=bracket_form_arrays(data),
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def twilio_client(
    base_url: str,
    *,
    account_sid: str = TEST_ACCOUNT_SID,
    auth_token: str = TEST_AUTH_TOKEN,
    timeout: float | None = 5.0,
) -> Client:
    """A twilio `Client` whose every request goes to `base_url` (see LoopbackHttpClient)."""
    return Client(
        account_sid, auth_token, http_client=LoopbackHttpClient(base_url, timeout=timeout)
    )
