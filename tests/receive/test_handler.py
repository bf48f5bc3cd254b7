"""The receive Lambda behind the synthesized API method: every response the issue lists.

Requests go through the real request template (stand-in `loop.apigw_vtl`), the handler runs
against moto (Secrets Manager, DynamoDB, IoT data), and the answer is mapped by the real
integration responses, so the statuses asserted are the ones Twilio would get.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest

from loop.apigw_vtl import default_context
from receive_lambda import handler
from receive_lambda.event import MAX_BODY_BYTES, MAX_QUERY_PARAMETERS
from tests.receive.conftest import (
    EXECUTE_API_URL,
    TOKEN,
    Call,
    ReceiveWorld,
    reset_receiver,
    sign,
    sms,
)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SID = "SM" + "0" * 31 + "1"


def test_valid_sms_is_published_once_with_qos1_and_answered_with_empty_twiml(
    world: ReceiveWorld,
) -> None:
    response = world.send(Call(sms()))
    assert (response.status, response.body) == (200, EMPTY_TWIML)
    assert response.headers["Content-Type"] == "application/xml"
    assert world.published() == [
        (
            "sms/dev-reverser/inbound",
            {
                "Type": "Incoming",
                "Id": SID,
                "From": "+15551234567",
                "To": "+15555550100",
                "Body": "Oozy rat in a sanitary zoo.",
                "Media": [],
            },
        )
    ]
    assert world.captured_qos == [1]
    logs = world.logs()
    published = [line for line in logs if line["message"] == "Published"]
    assert len(published) == 1
    assert published[0]["function_request_id"] == "11111111-2222-4333-8444-555555555555"
    assert published[0]["api_request_id"] == default_context()["requestId"]
    assert published[0]["sender"] == "+15*******67"
    text = json.dumps(logs)
    assert "Oozy rat" not in text and "+15551234567" not in text and "+15555550100" not in text


def test_non_ascii_text_is_published_as_raw_utf8(world: ReceiveWorld) -> None:
    body = "Grüße 😀 + = & % \" \\ ' \n 你好"
    assert world.send(Call(sms(body=body))).status == 200
    ((_, payload),) = world.published_raw()
    assert "😀".encode() in payload and b"\\u" not in payload
    assert json.loads(payload)["Body"] == body


def test_repeated_delivery_is_published_once(
    world: ReceiveWorld,
) -> None:
    first = world.send(Call(sms()))
    second = world.send(Call(sms()))
    assert first.status == second.status == 200
    assert second.body == EMPTY_TWIML
    assert len(world.published()) == 1
    messages = [line["message"] for line in world.logs()]
    assert messages.count("Repeated delivery: already published") == 1


@pytest.mark.parametrize(
    "signature",
    ["", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", sign(EXECUTE_API_URL, sms(), "wrong")],
    ids=["missing", "other-request", "wrong-token"],
)
def test_missing_or_wrong_signature_is_403_and_nothing_is_published(
    world: ReceiveWorld, signature: str
) -> None:
    response = world.send(Call(sms(), signature=signature))
    assert response.status == 403
    assert response.body.startswith("Forbidden:")
    assert world.published() == []


@pytest.mark.parametrize(
    "signature", ["not base64 at all", "0/KCTR6DLpKmkAf8muzZqo1nDgQ", "A" * 43 + "="]
)
def test_malformed_signature_is_403_and_nothing_is_published(
    world: ReceiveWorld, signature: str
) -> None:
    response = world.send(Call(sms(), signature=signature))
    assert response.status == 403
    assert response.body.startswith("Forbidden: X-Twilio-Signature is not an HMAC-SHA1")
    assert world.published() == []


def _padded_to(size: int) -> list[tuple[str, str]]:
    """A signed SMS whose form body is exactly `size` bytes (an unknown field pads it)."""
    pairs = sms(extra=[("Padding", "")])
    missing = size - len(urllib.parse.urlencode(pairs))
    return sms(extra=[("Padding", "x" * missing)])


def test_body_at_the_size_limit_is_delivered(world: ReceiveWorld) -> None:
    pairs = _padded_to(MAX_BODY_BYTES)
    assert len(urllib.parse.urlencode(pairs)) == 65536
    assert world.send(Call(pairs)).status == 200
    assert len(world.published()) == 1


def test_body_over_the_size_limit_is_400_and_nothing_is_published(world: ReceiveWorld) -> None:
    response = world.send(Call(_padded_to(MAX_BODY_BYTES + 1)))
    assert response.status == 400
    assert response.body == "BadRequest: the form body is larger than 65536 bytes"
    assert world.published() == []
    (rejected,) = [line for line in world.logs() if line["message"] == "Request rejected"]
    assert rejected["status"] == 400


def test_more_query_parameters_than_supported_is_400(world: ReceiveWorld) -> None:
    query = [(f"p{i}", "1") for i in range(MAX_QUERY_PARAMETERS + 1)]
    url = EXECUTE_API_URL + "?" + urllib.parse.urlencode(query)
    response = world.send(Call(sms(), url=url, query=query, signature=sign(url, sms())))
    assert response.status == 400
    assert "5 query parameters; at most 4 are supported" in response.body
    assert world.published() == []
    # At the limit, the same request is delivered.
    url = EXECUTE_API_URL + "?" + urllib.parse.urlencode(query[:-1])
    call = Call(sms(), url=url, query=query[:-1], signature=sign(url, sms()))
    assert world.send(call).status == 200
    assert len(world.published()) == 1


def test_signature_header_is_found_whatever_its_case(world: ReceiveWorld) -> None:
    call = Call(sms())
    request = call.request()
    lowered = [(k.lower(), v) for k, v in request.headers]
    response = world.method.handle(
        type(request)(body=request.body, headers=lowered, query=(), context=request.context),
        world.invoke(),
    )
    assert response.status == 200


def test_tampered_body_is_403(world: ReceiveWorld) -> None:
    call = Call(sms(), signature=sign(EXECUTE_API_URL, sms()))
    call.pairs = sms(body="Send me money")
    assert world.send(call).status == 403
    assert world.published() == []


def test_number_bound_to_no_device_gets_empty_twiml_and_one_log_line(
    world: ReceiveWorld,
) -> None:
    response = world.send(Call(sms(to="+15559990000")))
    assert (response.status, response.body) == (200, EMPTY_TWIML)
    assert world.published() == []
    lines = [line for line in world.logs() if line["level"] in ("INFO", "WARNING", "ERROR")]
    assert [line["message"] for line in lines] == ["No device is bound to the number texted"]
    assert lines[0]["to"] == "+15*******00"


def test_body_over_the_limit_is_answered_with_the_limit_and_not_published(
    world: ReceiveWorld,
) -> None:
    response = world.send(Call(sms(body="x" * 161)))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xml"
    assert "<Message>" in response.body and "limited to 160 characters" in response.body
    assert world.published() == []
    # The limit counts characters, not bytes: 160 emoji are fine.
    assert world.send(Call(sms(body="😀" * 160, sid="SM" + "0" * 31 + "2"))).status == 200
    assert len(world.published()) == 1


def test_mms_media_urls_and_types_are_published(world: ReceiveWorld) -> None:
    media = [
        ("NumMedia", "2"),
        ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl1", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2"),
        ("MediaContentType1", "text/vcard"),
    ]
    pairs = [p for p in sms(body="") if p[0] != "NumMedia"] + media
    assert world.send(Call(pairs)).status == 200
    ((_, message),) = world.published()
    assert message["Media"] == [
        {"Url": media[1][1], "ContentType": "image/jpeg"},
        {"Url": media[3][1], "ContentType": "text/vcard"},
    ]


@pytest.mark.parametrize(
    ("raw_body", "reason"),
    [
        (b"Body=a&&To=b", "empty field"),
        (b"Body", "field without ="),
        (b"Body=%zz&To=%2B15555550100", "malformed escape"),
        (b"Body=%C3&To=%2B15555550100", "not UTF-8"),
    ],
)
def test_malformed_form_body_is_400(world: ReceiveWorld, raw_body: bytes, reason: str) -> None:
    response = world.send(Call(sms(), raw_body=raw_body))
    assert response.status == 400, reason
    assert response.body.startswith("BadRequest:")
    assert world.published() == []


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "multipart/form-data; boundary=x"]
)
def test_wrong_content_type_is_400(world: ReceiveWorld, content_type: str | None) -> None:
    response = world.send(Call(sms(), content_type=content_type))
    assert response.status == 400
    assert world.published() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("MessageSid", "SM123"), ("NumMedia", "1"), ("NumMedia", "x"), ("From", "")],
)
def test_invalid_signed_fields_are_400(world: ReceiveWorld, field: str, value: str) -> None:
    pairs = [(k, value if k == field else v) for k, v in sms()]
    response = world.send(Call(pairs))
    assert response.status == 400, response.body
    assert world.published() == []


def test_repeated_contract_field_is_400(world: ReceiveWorld) -> None:
    response = world.send(Call([*sms(), ("Body", "second")]))
    assert response.status == 400
    assert "repeated" in response.body


def test_custom_domain_with_base_path_and_query_string_validates(world: ReceiveWorld) -> None:
    # Twilio is configured with this URL; API Gateway sees the custom domain, the base path
    # (no stage) and the decoded query parameters in an order of its own.
    url = "https://sms.example.com/hooks/twilio/message?env=dev&note=a%20b&z=%2F1"
    context = default_context(domain_name="sms.example.com", path="/hooks/twilio/message")
    query = [(k, v) for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)]
    response = world.send(
        Call(sms(), url=url, context=context, query=query, signature=sign(url, sms()))
    )
    assert response.status == 200
    assert len(world.published()) == 1
    # Signed for another URL (the execute-api one): rejected.
    wrong = Call(sms(), url=EXECUTE_API_URL, context=context, query=query)
    assert world.send(wrong).status == 403


def test_extra_fields_are_forwarded_when_configured(
    world: ReceiveWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRA_FIELDS", "FromCountry,NumSegments,OptOutType")
    reset_receiver()
    pairs = sms(extra=[("FromCountry", "DE"), ("OptOutType", "STOP")])
    assert world.send(Call(pairs)).status == 200
    ((_, message),) = world.published()
    assert message["FromCountry"] == "DE" and message["NumSegments"] == "1"
    assert message["OptOutType"] == "STOP"
    bad = sms(sid="SM" + "0" * 31 + "3", extra=[("FromCountry", "Germany")])
    assert world.send(Call(bad)).status == 400


def test_extra_fields_are_not_forwarded_by_default(world: ReceiveWorld) -> None:
    assert world.send(Call(sms(extra=[("FromCity", "BERLIN")]))).status == 200
    ((_, message),) = world.published()
    assert set(message) == {"Type", "Id", "From", "To", "Body", "Media"}


def test_rotated_token_is_fetched_again_after_a_failed_signature(world: ReceiveWorld) -> None:
    assert world.send(Call(sms())).status == 200  # caches TOKEN
    world.put_token("rotated-token")
    second = Call(sms(sid="SM" + "0" * 31 + "2"), token="rotated-token")
    assert world.send(second).status == 200
    assert len(world.published()) == 2
    # Refreshes are rate-limited: a forged request right after does not read the secret.
    tokens = handler.runtime().tokens
    assert tokens.refreshed() is None


def test_placeholder_secret_is_a_500_with_a_log_naming_the_fix(
    world: ReceiveWorld,
) -> None:
    world.put_token("")
    reset_receiver()
    response = world.send(Call(sms()))
    assert response.status == 500
    assert "put-secret-value" not in response.body  # the caller learns nothing
    assert world.published() == []
    errors = [line for line in world.logs() if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert "aws secretsmanager put-secret-value --secret-id text-device/dev/twilio" in str(
        errors[0]["message"]
    )


def test_publish_failure_is_a_500_and_a_retry_still_publishes(world: ReceiveWorld) -> None:
    publisher = handler.runtime().publisher

    def fail(**_: object) -> None:
        raise RuntimeError("IoT is down")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(publisher._iot_data, "publish", fail)
        response = world.send(Call(sms()))
    assert response.status == 500
    assert "IoT is down" not in response.body
    assert any(line["level"] == "ERROR" for line in world.logs())
    # The failed attempt left no idempotency record: the same MessageSid goes through.
    assert world.send(Call(sms())).status == 200
    assert len(world.published()) == 1


def test_token_fixture_is_not_the_secret_placeholder() -> None:
    assert TOKEN
