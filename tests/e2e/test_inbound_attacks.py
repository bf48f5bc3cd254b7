"""Issue 11, inbound: each attack of the issue against the whole local loop, outcome asserted.

The loop runs the dev environment with an allow-list for its device, the status callback on
and the stage's throttle applied (429 beyond its burst and rate). Every attack is recorded
in `OUTCOMES` (attack -> outcome -> count), printed at the end of the module for the issue's
closing note.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from loop.aws_local import find_by_path
from loop.device_host import board_app
from loop.local_loop import LOAD_CAPS, LocalLoop
from loop.twilio_webhook import SENDER_PHONE

pytestmark = pytest.mark.e2e
THING = "dev-reverser"
STRANGER = "+15559876543"
OUTCOMES: dict[str, tuple[str, int]] = {}


def record(attack: str, outcome: str, count: int) -> None:
    OUTCOMES[attack] = (outcome, count)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLoop]:
    settings = {
        "allowed_senders": {THING: [SENDER_PHONE]},
        "status_callback": True,
        **LOAD_CAPS,  # the owner is answered dozens of times a minute here
    }
    with LocalLoop(
        Path(tmp_path_factory.mktemp("attacks")),
        retry_delay_s=0.05,
        settings=settings,
        throttle=True,
    ) as running:
        yield running
    print("\n| attack | outcome | count |\n|---|---|---|")
    for attack, (outcome, count) in OUTCOMES.items():
        print(f"| {attack} | {outcome} | {count} |")


def webhook_form(loop: LocalLoop, body: str, **kwargs: Any) -> list[tuple[str, str]]:
    """The form Twilio posts when someone texts the device."""
    return loop.twilio_webhook.form(body, to=loop.number_of(), **kwargs)


def tag() -> str:
    return uuid.uuid4().hex[:8]


def reverse(text: str) -> str:
    reply = board_app().handle({"Body": text, "Media": []})
    assert isinstance(reply, str)
    return reply


def replies_to(loop: LocalLoop, body: str) -> list[dict[str, str]]:
    return [m for m in loop.twilio.sent_messages() if m.get("Body") == reverse(body)]


def received(loop: LocalLoop, body: str) -> list[dict[str, Any]]:
    return [m for m in loop.received[THING] if m["Body"] == body]


def wait_for_tokens(loop: LocalLoop, tokens: float) -> None:
    """After a flood, lets the stage's bucket refill before the next genuine text."""
    throttle = loop.webhook.throttle
    assert throttle is not None
    assert loop.wait_for(lambda: throttle.available() >= tokens, timeout=30)


def settle(loop: LocalLoop, body: str) -> None:
    """Gives a message that must not be answered the time a reply would take: a genuine
    text sent after it is answered first (the pipe is in order per device)."""
    marker = f"marker {tag()}"
    assert loop.text(marker).status == 200
    assert loop.wait_for(lambda: replies_to(loop, marker))
    assert not received(loop, body) and not replies_to(loop, body)


def test_a_stranger_cannot_control_the_device(loop: LocalLoop) -> None:
    body = f"OPEN GARAGE {tag()}"
    published = len(loop.published)
    responses = [loop.text(body, sender=STRANGER) for _ in range(3)]
    assert {(r.status, r.body) for r in responses} == {
        (200, '<?xml version="1.0" encoding="UTF-8"?><Response></Response>')
    }
    settle(loop, body)
    assert len(loop.published) == published + 1  # the marker alone
    record("stranger texts the device (not on its allow-list)", "200 empty TwiML, not published", 3)


def send_invocations(loop: LocalLoop) -> int:
    """How many messages the send Lambda has handled (sent or refused)."""
    return sum(1 for hop in list(loop.trace.hops) if hop.where == "send → Twilio")


def test_stop_and_help_are_not_forwarded_as_commands(loop: LocalLoop) -> None:
    published = len(loop.published)
    keywords = ["STOP", "stop", "HELP", "START", "Unsubscribe"]
    for keyword in keywords:
        assert loop.text(keyword).status == 200
    form = webhook_form(loop, "arrêt")  # a custom Advanced Opt-Out keyword
    assert loop.twilio_webhook.post([*form, ("OptOutType", "STOP")]).status == 200
    # Opted out, the owner gets no reply (the outbound policy reads the Contacts table)...
    unanswered = f"while opted out {tag()}"
    handled = send_invocations(loop)
    assert loop.text(unanswered).status == 200
    assert loop.wait_for(lambda: send_invocations(loop) > handled)  # the reply was decided
    assert loop.text("start").status == 200  # ...until START
    settle(loop, "STOP")
    assert not replies_to(loop, unanswered)
    assert len(loop.published) == published + 2  # the text while opted out, the marker
    assert not any(m["Body"].upper() in {"STOP", "HELP", "START"} for m in loop.received[THING])
    record(
        "STOP/HELP/START keywords and OptOutType",
        "200, not forwarded; no reply while opted out, until START",
        7,
    )


def idempotency_table(loop: LocalLoop) -> str:
    receive = find_by_path(loop.template, "AWS::Lambda::Function", "Receive/Function/Resource")
    return loop.aws.function_environment(receive)["IDEMPOTENCY_TABLE"]


def age_idempotency_records(loop: LocalLoop, seconds: float) -> int:
    """The time seam: every stored MessageSid record looks `seconds` older (its expiry moves
    back), as if the replay came that much later. Returns the records aged."""
    dynamodb = loop.moto.client("dynamodb")
    table = idempotency_table(loop)
    items = dynamodb.scan(TableName=table)["Items"]
    for item in items:
        item["expiration"] = {"N": str(int(item["expiration"]["N"]) - int(seconds))}
        dynamodb.put_item(TableName=table, Item=item)
    return len(items)


def test_a_replay_24_1_hours_later_is_not_published_again(loop: LocalLoop) -> None:
    body = f"replay me {tag()}"
    form = webhook_form(loop, body)
    signature = loop.twilio_webhook.signature(form)
    assert loop.twilio_webhook.post(form, signature=signature).status == 200
    assert loop.wait_for(lambda: replies_to(loop, body))
    assert age_idempotency_records(loop, 24.1 * 3600) >= 1
    # Every record outlives the replay: its expiry is still ~400 days away (the keys are
    # hashes of the MessageSid, so all records are checked).
    items = loop.moto.client("dynamodb").scan(TableName=idempotency_table(loop))["Items"]
    assert min(int(item["expiration"]["N"]) for item in items) - time.time() > 365 * 86400
    replay = loop.twilio_webhook.post(form, signature=signature)
    assert replay.status == 200
    settle(loop, f"{body} (again)")
    assert len(received(loop, body)) == 1 and len(replies_to(loop, body)) == 1
    record("the same signed request replayed 24.1 h later", "200, not published again", 1)


def test_re_split_fields_are_refused(loop: LocalLoop) -> None:
    # A stranger's own text, re-cut so that it seems to come from the owner.
    body = f"hiFrom{SENDER_PHONE}FromA"
    original = webhook_form(loop, body, sender=STRANGER)
    signature = loop.twilio_webhook.signature(original)
    fields = dict(original)
    smuggled = [(k, v) for k, v in original if k not in ("Body", "From")] + [
        ("Body", "hi"),
        ("From", SENDER_PHONE),
        ("FromA", "From" + STRANGER),
    ]
    absorbed = [(k, v) for k, v in original if k not in ("From", "FromCity")] + [
        ("From", fields["From"] + "FromCity" + fields["FromCity"])
    ]
    published = len(loop.published)
    statuses = [
        loop.twilio_webhook.post(forged, signature=signature).status
        for forged in (smuggled, absorbed)
    ]
    assert statuses == [400, 400]
    assert len(loop.published) == published
    record("re-split fields (From=+1555...FromCountryUS, smuggled From)", "400, not published", 2)


def put_secret(loop: LocalLoop, **tokens: str) -> None:
    """The secret's tokens replaced by `tokens` (a rotation step), its account kept."""
    loop.put_twilio_secret({"account_sid": loop.twilio_secret()["account_sid"], **tokens})


def test_token_rotation_loses_no_webhook(loop: LocalLoop) -> None:
    old, new = loop.twilio_webhook.auth_token, secrets.token_hex(16)
    client_errors = loop.webhook.metrics.value("4XXError")
    # 1. The new token goes into the secret as the secondary (README: rotation).
    put_secret(loop, auth_token=old, secondary_auth_token=new)
    # 2. It is promoted in Twilio's console: from now on Twilio signs with it. The Lambdas
    #    still hold the old token alone in their cache.
    loop.twilio_webhook.auth_token = new
    batch = [f"rotation {tag()} {n}" for n in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda b: loop.text(b).status, batch))
    assert statuses == [200] * len(batch)
    # 3. The secret keeps the new token alone.
    put_secret(loop, auth_token=new)
    last = f"after rotation {tag()}"
    assert loop.text(last).status == 200
    assert loop.wait_for(lambda: all(replies_to(loop, b) for b in [*batch, last]), timeout=30)
    assert loop.webhook.metrics.value("4XXError") == client_errors  # not one 403
    record("auth token rotated (secondary promoted)", "200, delivered, no 403 lost", 13)


def test_21_simultaneous_texts_all_arrive(loop: LocalLoop) -> None:
    wait_for_tokens(loop, loop.settings.throttle_burst_limit)
    batch = [f"simultaneous {tag()} {n:02d}" for n in range(21)]
    with ThreadPoolExecutor(max_workers=21) as pool:
        statuses = list(pool.map(lambda b: loop.text(b).status, batch))
    assert statuses == [200] * 21  # the 21st too
    assert loop.wait_for(lambda: all(replies_to(loop, b) for b in batch), timeout=60)
    assert all(len(received(loop, b)) == 1 for b in batch)
    record("21 simultaneous texts (default throttle for 1 device)", "21 x 200, 21 replies", 21)


def api_4xx_alarm_threshold(loop: LocalLoop) -> float:
    [alarm] = [
        r["Properties"]
        for r in loop.template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == "4XXError"
    ]
    return float(alarm["Threshold"])


def test_a_flood_is_throttled_and_raises_the_4xx_alarm(loop: LocalLoop) -> None:
    wait_for_tokens(loop, loop.settings.throttle_burst_limit)
    before = loop.webhook.metrics.value("4XXError")
    published = len(loop.published)
    flood = loop.settings.throttle_burst_limit * 3
    form = webhook_form(loop, f"flood {tag()}")
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = Counter(
            pool.map(lambda _: loop.twilio_webhook.post(form, signature="").status, range(flood))
        )
    assert set(statuses) <= {403, 429} and statuses[429] > 0
    client_errors = loop.webhook.metrics.value("4XXError") - before
    assert client_errors == flood
    assert client_errors > api_4xx_alarm_threshold(loop)  # the alarm's 5-minute sum
    assert len(loop.published) == published
    wait_for_tokens(loop, 1)
    after = f"after the flood {tag()}"
    assert loop.text(after).status == 200
    assert loop.wait_for(lambda: replies_to(loop, after))
    record(
        f"flood of {flood} unsigned webhooks",
        f"{statuses[403]} x 403 + {statuses[429]} x 429, 4xx alarm over its threshold",
        flood,
    )


def post_status(loop: LocalLoop, body: bytes, signature: str = "") -> tuple[int, float]:
    url = loop.webhook.url.removesuffix("/message") + "/status"
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, time.perf_counter() - started
    except urllib.error.HTTPError as error:
        return error.code, time.perf_counter() - started


def test_an_unbounded_status_body_is_refused_before_any_hmac(loop: LocalLoop) -> None:
    wait_for_tokens(loop, 4)  # four requests follow
    huge = b"a=1&" * 1_450_000  # 5.8 MB, 1.45 M fields
    status, _ = post_status(loop, huge, signature="A" * 27 + "=")
    assert status == 400
    many = "&".join(f"f{i}=1" for i in range(201)).encode()
    assert post_status(loop, many, signature="A" * 27 + "=")[0] == 400
    assert post_status(loop, b"MessageSid=SM1&MessageStatus=sent")[0] == 403
    # A genuine callback, signed for the status URL, is accepted.
    form = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered"}
    public = loop.webhook.public_url.removesuffix("/message") + "/status"
    signature = loop.twilio_webhook.signature(list(form.items()), url=public)
    assert post_status(loop, urllib.parse.urlencode(form).encode(), signature)[0] == 204
    record("unsigned 5.8 MB /status body; 201 fields; no signature", "400, 400, 403", 3)
