"""Unit tests of the send Lambda's pure rules (`send_lambda.outbound`, `send_lambda.config`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import MAX_BODY_CHARACTERS, attempt_marker_id, dead_letter_record
from lambda_shared.twilio_credentials import MissingCredentials, credentials_of
from send_lambda.config import SendConfig
from send_lambda.outbound import (
    RECONCILE_CLOCK_SKEW,
    TRIAL_PREFIX,
    Failure,
    ListedMessage,
    Reason,
    Rejected,
    classify_status,
    find_earlier_send,
    is_https_url,
    parse_message,
    twilio_refused,
)
from tests.send.scenarios import SENDER, THING, event

SETTINGS = SendConfig()
NUMBERS = {THING: SENDER, "other": "+15555550101"}


def rejected(payload: Any, settings: SendConfig = SETTINGS) -> Reason:
    with pytest.raises(Rejected) as caught:
        parse_message(payload, settings, NUMBERS)
    return caught.value.reason


def test_a_valid_message_is_sent_from_the_number_bound_to_the_thing() -> None:
    message = parse_message(event("abc", Body="hi"), SETTINGS, NUMBERS)
    assert (message.thing, message.id, message.from_, message.to, message.body) == (
        THING,
        "abc",
        SENDER,
        "+15551234567",
        "hi",
    )
    assert message.media_urls == ()
    assert message.idempotency_key == f"{THING}#abc"


def test_the_same_id_on_two_devices_gives_two_keys() -> None:
    one = parse_message(event("same"), SETTINGS, NUMBERS)
    two = parse_message(event("same", thing="other"), SETTINGS, NUMBERS)
    assert one.idempotency_key != two.idempotency_key
    assert two.from_ == "+15555550101"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not an object", Reason.NOT_AN_OBJECT),
        (["a", "list"], Reason.NOT_AN_OBJECT),
        (event(thing="stranger"), Reason.UNKNOWN_THING),
        ({"Type": "Outgoing", "Id": "x", "To": "+15551234567", "Body": "b"}, Reason.UNKNOWN_THING),
        (event(Type="Incoming"), Reason.WRONG_TYPE),
        (event(Id=""), Reason.INVALID_ID),
        (event(Id="has space"), Reason.INVALID_ID),
        (event(Id="x" * 129), Reason.INVALID_ID),
        (event(Id=12), Reason.INVALID_ID),
        (event(To="5551234567"), Reason.INVALID_TO),
        (event(To="+0551234567"), Reason.INVALID_TO),
        (event(To="+1555123456789012"), Reason.INVALID_TO),
        (event(To="whatsapp:+15551234567"), Reason.INVALID_TO),
        (event(To=None), Reason.INVALID_TO),
        (event(From="+15555550101"), Reason.FROM_NOT_ALLOWED),
        (event(Body=42), Reason.INVALID_BODY),
        (event(Body="x" * (MAX_BODY_CHARACTERS + 1)), Reason.BODY_TOO_LONG),
        (event(Body=""), Reason.EMPTY_MESSAGE),
        (event(MediaUrl="http://example.com/a.jpg"), Reason.INVALID_MEDIA_URL),
        (event(MediaUrl="https://"), Reason.INVALID_MEDIA_URL),
        (event(MediaUrl="https://example.com/a b.jpg"), Reason.INVALID_MEDIA_URL),
        (event(MediaUrl="javascript:alert(1)"), Reason.INVALID_MEDIA_URL),
        (event(MediaUrl={"Url": "https://example.com"}), Reason.INVALID_MEDIA_URL),
        (event(MediaUrl=["https://example.com/a.jpg"] * 11), Reason.TOO_MANY_MEDIA),
        (
            event(MediaUrl="https://example.com/a.jpg", Image="https://example.com/b.jpg"),
            Reason.MEDIA_ALIAS_CONFLICT,
        ),
    ],
)
def test_anything_else_is_rejected_with_a_specific_reason(payload: Any, reason: Reason) -> None:
    assert rejected(payload) is reason


def test_body_of_exactly_1600_characters_and_emoji_is_accepted() -> None:
    body = "😀" * MAX_BODY_CHARACTERS
    assert parse_message(event(Body=body), SETTINGS, NUMBERS).body == body


def test_from_equal_to_the_bound_number_is_tolerated() -> None:
    assert parse_message(event(From=SENDER), SETTINGS, NUMBERS).from_ == SENDER


def test_media_only_message_and_the_image_alias() -> None:
    message = parse_message(event(Body="", Image="https://example.com/cat.jpg"), SETTINGS, NUMBERS)
    assert message.media_urls == ("https://example.com/cat.jpg",)
    both_equal = event(MediaUrl="https://e.com/a.png", Image="https://e.com/a.png")
    assert parse_message(both_equal, SETTINGS, NUMBERS).media_urls == ("https://e.com/a.png",)
    many = [f"https://e.com/{i}.png" for i in range(10)]
    assert parse_message(event(MediaUrl=many), SETTINGS, NUMBERS).media_urls == tuple(many)


RESOURCES = {
    "TWILIO_SECRET_NAME": "text-device/dev/twilio",
    "IDEMPOTENCY_TABLE": "table",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/dlq",
    "BINDINGS_TABLE": "bindings",
    "CONTACTS_TABLE": "contacts",
    "REFUSED_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/refused",
}


def test_config_from_environment() -> None:
    config = SendConfig.from_environ(
        {
            **RESOURCES,
            "DESTINATION_ALLOW_LIST": "+15551234567, +15557654321",
            "STATUS_CALLBACK_URL": "https://x.example/v1/status",
        }
    )
    assert config.policy.allow_list == {"+15551234567", "+15557654321"}
    assert config.status_callback_url == "https://x.example/v1/status"
    assert config.secret_name == "text-device/dev/twilio"
    assert (config.idempotency_table, config.dead_letter_queue_url, config.bindings_table) == (
        "table",
        RESOURCES["DEAD_LETTER_QUEUE_URL"],
        "bindings",
    )
    assert (config.contacts_table, config.refused_queue_url) == (
        "contacts",
        RESOURCES["REFUSED_QUEUE_URL"],
    )
    empty = SendConfig.from_environ(RESOURCES)
    assert empty.policy.allow_list == frozenset()
    assert empty.status_callback_url is None
    for required in ("DEAD_LETTER_QUEUE_URL", "BINDINGS_TABLE", "CONTACTS_TABLE"):
        with pytest.raises(ValueError, match=required):
            SendConfig.from_environ({**RESOURCES, required: ""})


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (500, Failure.TRANSIENT),
        (502, Failure.TRANSIENT),
        (503, Failure.TRANSIENT),
        (429, Failure.TRANSIENT),
        (400, Failure.PERMANENT),
        (401, Failure.PERMANENT),
        (404, Failure.PERMANENT),
    ],
)
def test_classify_twilio_status(status: int, failure: Failure) -> None:
    assert classify_status(status) is failure


@pytest.mark.parametrize(
    ("status", "refused"),
    [(400, True), (404, True), (429, True), (500, False), (502, False), (504, False)],
)
def test_only_a_4xx_proves_twilio_did_not_take_the_message(status: int, refused: bool) -> None:
    assert twilio_refused(status) is refused


def test_dead_letter_record_has_lambdas_on_failure_shape() -> None:
    record = dead_letter_record(
        {"Id": "x"},
        condition="PermanentTwilioError",
        request_id="r",
        function_arn="arn:f",
        error={"twilioCode": 21211},
        now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert record["timestamp"] == "2025-01-02T03:04:05.000Z"
    assert record["requestContext"]["condition"] == "PermanentTwilioError"
    assert record["requestPayload"] == {"Id": "x"}
    assert record["responsePayload"] == {"twilioCode": 21211}


def test_credentials_of_the_secret() -> None:
    credentials = credentials_of({"account_sid": "AC1", "auth_token": "t"}, "s")
    assert (credentials.account_sid, credentials.auth_token) == ("AC1", "t")
    for unset in ({"account_sid": "", "auth_token": ""}, {}, "text"):
        with pytest.raises(MissingCredentials, match="put-secret-value --secret-id s "):
            credentials_of(unset, "s")


@given(st.text(max_size=200))
def test_https_check_never_crashes_and_accepts_only_https(url: str) -> None:
    if is_https_url(url):
        assert url.startswith("https://")


@given(
    st.dictionaries(
        st.sampled_from(["Type", "Id", "To", "Body", "MediaUrl", "Image", "From", "thing"]),
        st.none()
        | st.text(max_size=30)
        | st.integers()
        | st.lists(st.text(max_size=10), max_size=3),
    )
)
def test_any_payload_is_either_a_valid_message_or_rejected(payload: dict[str, Any]) -> None:
    try:
        message = parse_message(payload, SETTINGS, NUMBERS)
    except Rejected:
        return
    assert message.from_ in (SENDER, "+15555550101")
    assert message.body or message.media_urls


# -- Reconciliation: recognising the message an earlier attempt got Twilio to send ----------

FIRST_ATTEMPT = datetime(2025, 3, 1, 12, 0, 0, 700_000, tzinfo=UTC)
CREATED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)  # Twilio's dates: to the second
OURS = ListedMessage(
    sid="SM" + "1" * 32,
    to="+15551234567",
    from_=SENDER,
    body="hello",
    num_media=0,
    date_created=CREATED,
    status="sent",
)


def earlier(*candidates: ListedMessage, media_count: int = 0) -> ListedMessage | None:
    return find_earlier_send(
        candidates,
        to="+15551234567",
        from_=SENDER,
        body="hello",
        media_count=media_count,
        first_attempt=FIRST_ATTEMPT,
    )


def test_the_marker_key_is_per_device_and_id() -> None:
    message = parse_message(event("abc"), SETTINGS, NUMBERS)
    assert message.attempt_marker_id == attempt_marker_id(message.idempotency_key)
    assert message.attempt_marker_id == f"attempt#{THING}#abc"


def test_our_message_is_found_despite_twilios_second_resolution() -> None:
    assert earlier(OURS) == OURS


@pytest.mark.parametrize(
    "other",
    [
        replace(OURS, body="hello!"),
        replace(OURS, to="+15557654321"),
        replace(OURS, from_="+15555550101"),
        replace(OURS, num_media=1),
        replace(OURS, date_created=None),
        replace(OURS, date_created=FIRST_ATTEMPT - RECONCILE_CLOCK_SKEW - timedelta(seconds=2)),
    ],
    ids=["body", "to", "from", "media", "no-date", "before-skew"],
)
def test_a_message_that_differs_is_not_ours(other: ListedMessage) -> None:
    assert earlier(other) is None


def test_twilios_clock_may_be_behind_by_the_skew() -> None:
    behind = replace(OURS, date_created=FIRST_ATTEMPT - RECONCILE_CLOCK_SKEW + timedelta(seconds=1))
    assert earlier(behind) == behind


def test_a_trial_accounts_prefix_and_an_unknown_media_count_still_match() -> None:
    trial = replace(OURS, body=TRIAL_PREFIX + "hello", num_media=None)
    assert earlier(trial) == trial
    assert earlier(replace(OURS, num_media=2), media_count=2) is not None


def test_of_identical_texts_the_one_closest_to_the_first_attempt_is_ours() -> None:
    before = replace(OURS, sid="SM" + "0" * 32, date_created=CREATED - timedelta(seconds=30))
    retry = replace(OURS, sid="SM" + "2" * 32, date_created=CREATED + timedelta(minutes=2))
    assert earlier(retry, before, OURS) == OURS
    assert earlier(before, retry) == before  # 30 s before is closer than 2 min after
    assert earlier() is None
