"""Twilio's side of an incoming message: the form it posts, its signature, the POST."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from twilio.request_validator import RequestValidator

from loop.apigw_vtl import HttpResponse
from loop.twilio_loopback import TEST_ACCOUNT_SID

SENDER_PHONE = "+15551234567"  # the person texting the device (a reserved 555 number)


class TwilioWebhook:
    """Posts webhooks to `url` as Twilio does, signed for `public_url` with `auth_token`."""

    def __init__(self, url: str, public_url: str, auth_token: str) -> None:
        self.url = url
        self.public_url = public_url
        self.auth_token = auth_token

    @staticmethod
    def form(
        body: str,
        *,
        to: str,
        sender: str = SENDER_PHONE,
        media: Sequence[tuple[str, str]] = (),
        message_sid: str | None = None,
    ) -> list[tuple[str, str]]:
        """The form Twilio posts for an incoming SMS/MMS (`media`: URL, content type)."""
        sid = message_sid or "SM" + secrets.token_hex(16)
        form = [
            ("ToCountry", "US"),
            ("ToState", "CA"),
            ("SmsMessageSid", sid),
            ("NumMedia", str(len(media))),
            ("ToCity", ""),
            ("FromZip", ""),
            ("SmsSid", sid),
            ("FromState", "CA"),
            ("SmsStatus", "received"),
            ("FromCity", ""),
            ("Body", body),
            ("FromCountry", "US"),
            ("To", to),
            ("ToZip", ""),
            ("NumSegments", "1"),
            ("MessageSid", sid),
            ("AccountSid", TEST_ACCOUNT_SID),
            ("From", sender),
            ("ApiVersion", "2010-04-01"),
        ]
        for index, (url, content_type) in enumerate(media):
            form.append((f"MediaUrl{index}", url))
            form.append((f"MediaContentType{index}", content_type))
        return form

    def signature(self, form: Sequence[tuple[str, str]], url: str | None = None) -> str:
        """X-Twilio-Signature for posting `form` to the webhook's public URL."""
        validator = RequestValidator(self.auth_token)
        params: dict[str, str] = {}
        for key, value in form:
            params.setdefault(key, value)
        return str(validator.compute_signature(url or self.public_url, params))

    def post(
        self,
        form: Sequence[tuple[str, str]],
        *,
        signature: str | None = None,
        content_type: str = "application/x-www-form-urlencoded",
        raw_body: bytes | None = None,
    ) -> HttpResponse:
        """POSTs `form` as Twilio would (signed unless `signature` is given)."""
        body = raw_body if raw_body is not None else urllib.parse.urlencode(form).encode()
        headers = {
            "Content-Type": content_type,
            "X-Twilio-Signature": signature if signature is not None else self.signature(form),
            "User-Agent": "TwilioProxy/1.1",
        }
        # http://127.0.0.1 only: the URL is the local endpoint's own.
        request = urllib.request.Request(self.url, data=body, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                text = response.read().decode()
                return HttpResponse(response.status, dict(response.headers.items()), text)
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            return HttpResponse(error.code, dict(error.headers.items()), text)
