"""Status-callback Lambda entry point: logs Twilio's delivery reports, failures at ERROR.

API Gateway proxy integration on `POST /status`, read through Powertools'
`APIGatewayProxyEvent`. The request is verified with Twilio's signature like the
webhook's; the answer is an empty 204 (Twilio ignores the body).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from twilio.request_validator import RequestValidator

from lambda_shared.twilio_credentials import MissingCredentials, read_twilio_credentials
from status_lambda import SERVICE
from status_lambda.config import StatusConfig
from status_lambda.status import BadCallback, form_of, report_of, signed_url

logger = Logger(service=SERVICE)


@functools.cache
def config() -> StatusConfig:
    """This container's settings, read from the environment on first use (tests clear it)."""
    return StatusConfig.from_environ(os.environ)


def _answer(status: int) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": ""}


def _rejected(reason: str, status: int) -> dict[str, Any]:
    logger.warning("status callback rejected", extra={"reason": reason})
    return _answer(status)


def _auth_token() -> str:
    """The current auth token; empty while the secret is unset (every callback is 403)."""
    try:
        return read_twilio_credentials(config().secret_name).auth_token
    except MissingCredentials as error:
        logger.error(str(error))
        return ""


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=APIGatewayProxyEvent)
def lambda_handler(event: APIGatewayProxyEvent, _context: LambdaContext) -> dict[str, Any]:
    """Verifies and logs one status callback."""
    try:
        form = form_of(event.body, base64_encoded=bool(event.is_base64_encoded))
    except BadCallback as error:
        return _rejected(str(error), 400)
    if not event.get("requestContext"):
        return _rejected("not an API Gateway proxy event", 400)
    context = event.request_context
    url = signed_url(context.domain_name or "", context.get("path") or "")
    signature = event.headers.get("x-twilio-signature") or ""
    token = _auth_token()
    if not token or not RequestValidator(token).validate(url, form, signature):
        return _rejected("invalid signature", 403)
    try:
        report = report_of(form)
    except BadCallback as error:
        return _rejected(str(error), 400)
    fields = {"sid": report.message_sid, "status": report.status, "error_code": report.error_code}
    if report.failed:
        logger.error("message not delivered", extra=fields)
    else:
        logger.info("message status", extra=fields)
    return _answer(204)
