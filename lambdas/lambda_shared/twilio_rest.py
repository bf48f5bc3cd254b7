"""The Twilio REST client, built once per container and rebuilt only when the secret's
credentials change (a rotation). Imported only by the Lambdas that call Twilio's API."""

from __future__ import annotations

import logging
from collections.abc import Callable

from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from lambda_shared.twilio_credentials import read_twilio_credentials

HttpClientFactory = Callable[[float], HttpClient]
"""Makes the transport of a Twilio client, given its timeout in seconds."""

# twilio's client logs each request at INFO; keep it quiet (URLs carry the account SID).
_twilio_http_logger = logging.getLogger("twilio.http_client")
_twilio_http_logger.setLevel(logging.WARNING)


def default_http_client(timeout: float) -> HttpClient:
    """The production transport: twilio's own client with a finite timeout."""
    return TwilioHttpClient(timeout=timeout, logger=_twilio_http_logger)


_transport: HttpClientFactory = default_http_client


def use_transport(factory: HttpClientFactory | None) -> None:
    """Sends every Twilio client built from now on through `factory` (the offline demo and
    the tests point it at a mock of Twilio's API); None restores the production transport."""
    global _transport  # one transport per container, like the clients it builds
    _transport = factory or default_http_client


class TwilioClients:
    """The Twilio client of the secret `secret_name`, cached with its credentials."""

    def __init__(
        self,
        secret_name: str,
        *,
        timeout: float,
        http_client_factory: HttpClientFactory | None = None,
    ) -> None:
        self._secret_name = secret_name
        self._timeout = timeout
        self._http_client_factory = http_client_factory
        self._cached: tuple[tuple[str, str], Client] | None = None

    def client(self) -> Client:
        """The client for the current credentials (raises MissingCredentials while unset)."""
        credentials = read_twilio_credentials(self._secret_name)
        return self._client_for(credentials.account_sid, credentials.auth_token)

    def client_after_unauthorized(self, rejected: Client) -> Client | None:
        """After Twilio answered 401 to `rejected`: a client with other credentials, from a
        fresh read of the secret (the cache bypassed): the new primary token, else the
        rotation's secondary one; None when the secret holds nothing else to try.

        Between Twilio promoting a new token and this container's cache expiring, the cached
        token fails; the fresh read (or the secondary token) saves the request.
        """
        credentials = read_twilio_credentials(self._secret_name, force=True)
        failed = (str(rejected.username), str(rejected.password))
        for token in credentials.auth_tokens:
            if (credentials.account_sid, token) != failed:
                return self._client_for(credentials.account_sid, token)
        return None

    def _client_for(self, account_sid: str, auth_token: str) -> Client:
        if self._cached is None or self._cached[0] != (account_sid, auth_token):
            factory = self._http_client_factory or _transport
            client = Client(account_sid, auth_token, http_client=factory(self._timeout))
            self._cached = ((account_sid, auth_token), client)
        return self._cached[1]
