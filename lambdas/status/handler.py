"""Status-callback Lambda: logs Twilio's delivery reports, failures at ERROR level.

API Gateway proxy integration on `POST /status`. The request is verified with Twilio's
signature like the webhook's, with the same bounds first (body size, field count, query
parameters, a well-formed signature), so an unsigned request costs no secret read and no
HMAC; the secret's primary and (during a rotation) secondary tokens both verify. The
answer is an empty 204 (Twilio ignores the body).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from status import (
    BadCallback,
    auth_tokens,
    form_of,
    report_of,
    signature,
    signature_is_well_formed,
    signed_url,
)
from twilio.request_validator import RequestValidator

SECRET_MAX_AGE = 300
logger = Logger(service="status")


def _answer(status: int) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": ""}


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """Verifies and logs one status callback."""
    try:
        form = form_of(event)
    except BadCallback as error:
        logger.warning("status callback rejected", extra={"reason": str(error)})
        return _answer(400)
    signed = signature(event)
    if not signature_is_well_formed(signed):
        # Refused without reading the secret or computing any HMAC.
        logger.warning("status callback rejected", extra={"reason": "malformed signature"})
        return _answer(403)
    secret = parameters.get_secret(
        os.environ["TWILIO_SECRET_NAME"], transform="json", max_age=SECRET_MAX_AGE
    )
    url = signed_url(event)
    if not any(
        RequestValidator(token).validate(url, form, signed) for token in auth_tokens(secret)
    ):
        logger.warning("status callback rejected", extra={"reason": "invalid signature"})
        return _answer(403)
    try:
        report = report_of(form)
    except BadCallback as error:
        logger.warning("status callback rejected", extra={"reason": str(error)})
        return _answer(400)
    fields = {"sid": report.message_sid, "status": report.status, "error_code": report.error_code}
    if report.failed:
        logger.error("message not delivered", extra=fields)
    else:
        logger.info("message status", extra=fields)
    return _answer(204)
