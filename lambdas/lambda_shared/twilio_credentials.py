"""The Twilio credentials of the environment's secret, read through Powertools parameters.

Every Lambda reads the secret `{"account_sid": ..., "auth_token": ...}` (plus
`"secondary_auth_token"` while a rotation is under way) the same way:
`parameters.get_secret(..., transform="json", max_age=...)`, so a warm container asks
Secrets Manager at most once per `SECRET_MAX_AGE_SECONDS` (and again when forced, after a
rotation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities import parameters

import contract

SECRET_MAX_AGE_SECONDS = 300
"""How long a warm container trusts its cached credentials before reading the secret again."""


class MissingCredentials(Exception):
    """The secret has no credentials yet: the deployment is unfinished, not the caller's fault."""


@dataclass(frozen=True)
class TwilioCredentials:
    """An account SID, its auth token and, during a rotation, the secondary token."""

    account_sid: str
    auth_token: str
    secondary_auth_token: str = ""

    @property
    def auth_tokens(self) -> tuple[str, ...]:
        """The tokens a Twilio signature may be made with: primary first, then secondary."""
        if self.secondary_auth_token and self.secondary_auth_token != self.auth_token:
            return (self.auth_token, self.secondary_auth_token)
        return (self.auth_token,)


def credentials_of(value: Any, secret_name: str) -> TwilioCredentials:
    """The credentials in the secret's JSON; MissingCredentials (naming the fix) while unset."""
    fields = value if isinstance(value, Mapping) else {}
    sid, token = fields.get("account_sid"), fields.get("auth_token")
    if not isinstance(sid, str) or not sid or not isinstance(token, str) or not token:
        example = json.dumps({"account_sid": "ACxxxxxxxx", "auth_token": "your-auth-token"})
        raise MissingCredentials(
            f"The Twilio secret {secret_name} has no account_sid/auth_token yet. Put them once "
            f"per environment: aws secretsmanager put-secret-value --secret-id {secret_name} "
            f"--secret-string '{example}'"
        )
    secondary = fields.get(contract.SECONDARY_AUTH_TOKEN_KEY)
    return TwilioCredentials(
        account_sid=sid,
        auth_token=token,
        secondary_auth_token=secondary if isinstance(secondary, str) else "",
    )


def read_twilio_credentials(
    secret_name: str, *, force: bool = False, max_age: int = SECRET_MAX_AGE_SECONDS
) -> TwilioCredentials:
    """The secret's credentials, from this container's cache unless older than `max_age`
    seconds or `force`d (a fresh read, e.g. after a failed signature)."""
    value = parameters.get_secret(secret_name, transform="json", max_age=max_age, force_fetch=force)
    return credentials_of(value, secret_name)
