"""Issue 11, point 6: the custom resource's physical ID never holds a credential.

CloudFormation shows physical IDs in the console and in stack events, so the previous
webhook URLs it remembers lose `user:password@` and their query string; the fragment
(Twilio's connection overrides) stays, and a delete says what could not be restored.
"""

from __future__ import annotations

import base64

import pytest

from tests.send.test_twilio_number import PRISM_NUMBER, WEBHOOK, FakeClient
from twilio_number_lambda.number_webhook import (
    Desired,
    SmsWebhook,
    configure,
    parse_physical_id,
    restore,
)


def decoded(resource_id: str) -> str:
    return base64.urlsafe_b64decode(resource_id.split(":", 2)[2].encode()).decode()


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://user:s3cret@old.example/sms", "https://old.example/sms"),
        ("https://:s3cret@old.example:8443/sms", "https://old.example:8443/sms"),
        ("https://old.example/sms?token=s3cret&x=1", "https://old.example/sms"),
        (
            "https://u:s3cret@old.example/sms?k=s3cret#rc=2&rp=all",
            "https://old.example/sms#rc=2&rp=all",
        ),
        ("https://old.example/sms#rc=2", "https://old.example/sms#rc=2"),
    ],
)
def test_previous_urls_are_remembered_without_credentials(url: str, kept: str) -> None:
    before = SmsWebhook(url, "POST", url, "POST")
    client = FakeClient(before)
    resource_id = configure(client, Desired(PRISM_NUMBER, WEBHOOK))
    assert "s3cret" not in resource_id and "s3cret" not in decoded(resource_id)
    parsed = parse_physical_id(resource_id)
    assert parsed is not None
    _, remembered, stripped = parsed
    assert remembered == SmsWebhook(kept, "POST", kept, "POST")
    assert stripped == (kept != url)


def test_a_delete_restores_what_it_kept_and_says_what_it_dropped() -> None:
    client = FakeClient(SmsWebhook("https://user:s3cret@old.example/sms"))
    desired = Desired(PRISM_NUMBER, WEBHOOK)
    resource_id = configure(client, desired)
    outcome = restore(client, resource_id, desired)
    assert outcome.startswith("restored without credentials")
    assert "s3cret" not in outcome
    assert client.incoming_phone_numbers.number.sms_url == "https://old.example/sms"
