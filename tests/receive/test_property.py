"""Property tests: any form value arrives exactly; no input of any kind gets a 5xx.

Each example goes through the real request template taken from the synthesized stack,
rendered by a real Velocity engine with API Gateway's `$input`/`$util`/`$context`
(`loop.apigw_vtl`), then the handler (moto), then the real integration responses.
"""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from lambda_shared.webhook_bounds import MAX_BODY_BYTES
from loop.apigw_vtl import HttpRequest, default_context
from receive_lambda.inbound_policy import consent_signal
from tests.conftest import Synthesized
from tests.receive.conftest import (
    FORM,
    Call,
    ReceiveWorld,
    make_world,
    sign,
)

EXAMPLES = 1000
FUZZ_EXAMPLES = 400
# Each example runs the whole receive path (VTL, Lambda, moto), so no deadline; no example
# database, so every run starts from the same seeds.
WHOLE_PATH = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FORWARDED = ("FromCity", "ToZip", "ProfileName")
CONTRACT = {"Body", "From", "To", "MessageSid", "NumMedia"}
_sids = itertools.count(1)

# Characters that break naive decoders, mixed into arbitrary Unicode (no surrogates).
TRICKY = st.sampled_from([*"+=&%\"\\'\n\r\t ;#?/<>", "😀", "é", "你", "\u200b", "%2B", "+1"])
TEXT = st.lists(st.one_of(TRICKY, st.characters(exclude_categories=["Cs"])), max_size=40).map(
    "".join
)
URL_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), max_size=30
)
CONTEXTS = [
    # execute-api domain: the path starts with the stage.
    ("https://abc123defg.execute-api.eu-west-1.amazonaws.com/v1/message", default_context()),
    # Custom domain with a (nested) base path: the path has the base path, no stage.
    (
        "https://sms.example.com/hooks/twilio/message",
        default_context(domain_name="sms.example.com", path="/hooks/twilio/message"),
    ),
]


@pytest.fixture(scope="module")
def forwarding_world(synthesized: dict[str, Synthesized]) -> Iterator[ReceiveWorld]:
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        yield make_world(synthesized["dev"], monkeypatch, EXTRA_FIELDS=",".join(FORWARDED))


@st.composite
def webhooks(draw: st.DrawFn) -> dict[str, Any]:
    """An incoming SMS/MMS with arbitrary values, extra and repeated parameters."""
    media_count = draw(st.integers(0, 10))
    media = [
        {
            "Url": "https://api.twilio.com/Media/" + draw(URL_TEXT),
            "ContentType": draw(
                st.sampled_from(["image/jpeg", "image/png", "text/vcard", "video/mp4"])
            ),
        }
        for _ in range(media_count)
    ]
    # Every value in the shape Twilio gives it (the handler rejects anything else).
    shaped = {
        "FromCity": st.text(alphabet="ABCXYZ019 .,'()/-", max_size=64),
        "ToZip": st.text(alphabet="ABZ0189 -", max_size=12),
        "ProfileName": TEXT.map(lambda v: "".join(c for c in v if c.isprintable())[:32]),
    }
    forwarded = {name: draw(shaped[name]) for name in FORWARDED if draw(st.booleans())}
    # Parameters Twilio may add without notice: CamelCase names, any value. Named `Sms...`
    # so they never sort right after a trusted field (From, To, Body, MessageSid), where
    # only documented names are accepted (a re-split would leave one there).
    others = draw(
        st.lists(
            st.tuples(
                st.from_regex(r"Sms[A-Z][A-Za-z0-9]{0,8}", fullmatch=True),
                TEXT,
            ),
            max_size=4,
        )
    )
    return {
        "Body": draw(TEXT.filter(lambda body: consent_signal(body, None) is None)),
        "From": draw(
            st.from_regex(r"(whatsapp:|rcs:)?\+[1-9][0-9]{6,14}|[0-9]{3,8}", fullmatch=True)
        ),
        "Sid": f"SM{next(_sids):032x}",
        "Media": media,
        "Forwarded": forwarded,
        # Unknown parameters, possibly repeated (a name twice): signed, not forwarded.
        "Others": others + others[:1],
        "Query": draw(
            st.dictionaries(st.text(min_size=1, max_size=6), URL_TEXT, max_size=3).map(
                lambda d: list(d.items())
            )
        ),
        "Context": draw(st.sampled_from(CONTEXTS)),
        "PlusStyle": draw(st.booleans()),
    }


def form_pairs(hook: dict[str, Any], to: str) -> list[tuple[str, str]]:
    pairs = [
        ("MessageSid", hook["Sid"]),
        ("From", hook["From"]),
        ("To", to),
        ("Body", hook["Body"]),
        ("NumMedia", str(len(hook["Media"]))),
    ]
    for index, item in enumerate(hook["Media"]):
        pairs += [
            (f"MediaUrl{index}", item["Url"]),
            (f"MediaContentType{index}", item["ContentType"]),
        ]
    pairs += list(hook["Forwarded"].items()) + hook["Others"]
    return pairs


def test_every_value_is_delivered_exactly_as_sent(forwarding_world: ReceiveWorld) -> None:
    world = forwarding_world
    examples = 0

    @settings(WHOLE_PATH, max_examples=EXAMPLES)
    @given(webhooks())
    def delivered_exactly(hook: dict[str, Any]) -> None:
        nonlocal examples
        examples += 1
        pairs = form_pairs(hook, "+15555550100")
        base, context = hook["Context"]
        # The URL configured in Twilio, with its own query string (as a person writes it).
        quote = urllib.parse.quote_plus if hook["PlusStyle"] else urllib.parse.quote
        query_string = urllib.parse.urlencode(hook["Query"], quote_via=quote)
        url = base + ("?" + query_string if query_string else "")
        before = len(world.published())
        response = world.send(Call(pairs, url=url, context=dict(context), query=hook["Query"]))
        assert (response.status, response.headers["Content-Type"]) == (200, "application/xml")
        published = world.published()
        assert len(published) == before + 1
        topic, message = published[-1]
        assert topic == "sms/dev-reverser/inbound"
        assert message == {
            "Type": "Incoming",
            "Id": hook["Sid"],
            "From": hook["From"],
            "To": "+15555550100",
            "Body": hook["Body"],
            "Media": hook["Media"],
            **hook["Forwarded"],
        }

    delivered_exactly()
    print(f"\nproperty test: {examples} examples delivered exactly")
    assert examples >= EXAMPLES


HEADER_NAMES = st.sampled_from(["X-Twilio-Signature", "x-twilio-signature", "Content-Type", "X-A"])


def test_no_request_of_any_kind_gets_a_5xx(forwarding_world: ReceiveWorld) -> None:
    world = forwarding_world
    examples = 0

    @settings(WHOLE_PATH, max_examples=FUZZ_EXAMPLES)
    @given(
        body=st.binary(max_size=300)
        | TEXT.map(str.encode)
        # Around the size limit, as a form and as any bytes: 400s, never a slow 5xx.
        | st.sampled_from([MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1]).map(
            lambda size: (b"Body=" + b"x" * size)[:size]
        )
        | st.binary(min_size=MAX_BODY_BYTES - 2, max_size=MAX_BODY_BYTES + 2),
        content_type=st.sampled_from(
            [FORM, "application/x-www-form-urlencoded", None, "application/json", "text/xml"]
        )
        | st.text(max_size=20),
        headers=st.lists(st.tuples(HEADER_NAMES, st.text(max_size=40)), max_size=3),
        query=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=7),
        context=st.sampled_from(CONTEXTS),
    )
    def never_5xx(
        body: bytes,
        content_type: str | None,
        headers: list[tuple[str, str]],
        query: list[tuple[str, str]],
        context: tuple[str, dict[str, Any]],
    ) -> None:
        nonlocal examples
        examples += 1
        all_headers = headers + ([("Content-Type", content_type)] if content_type else [])
        request = HttpRequest(body=body, headers=all_headers, query=query, context=context[1])
        response = world.method.handle(request, world.invoke())
        assert response.status < 500, response

    never_5xx()
    assert examples >= FUZZ_EXAMPLES


@st.composite
def signed_forms(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Correctly signed forms with arbitrary (often invalid) Twilio fields."""
    names = st.sampled_from(
        [
            "MessageSid",
            "From",
            "To",
            "Body",
            "NumMedia",
            "MediaUrl0",
            "MediaContentType0",
            "MediaUrl1",
            "MediaUrl10",
            "FromCity",
            "ProfileName",
            "ToZip",
        ]
    ) | st.text(max_size=6)
    values = (
        st.sampled_from(
            [
                "+15555550100",
                "1",
                "2",
                "11",
                "-1",
                "image/png",
                "https://x.example/1",
                "SM" + "a" * 32,
                "",
            ]
        )
        | TEXT
    )
    pairs = draw(st.lists(st.tuples(names, values), max_size=10))
    if draw(st.booleans()):
        pairs.append(("To", "+15555550100"))
    return [(k, v) for k, v in pairs if k]


def test_signed_requests_with_any_fields_get_200_or_400(forwarding_world: ReceiveWorld) -> None:
    world = forwarding_world
    examples = 0

    @settings(WHOLE_PATH, max_examples=FUZZ_EXAMPLES)
    @given(signed_forms())
    def answered(pairs: list[tuple[str, str]]) -> None:
        nonlocal examples
        examples += 1
        response = world.send(Call(pairs))
        assert response.status in (200, 400), response

    answered()
    assert examples >= FUZZ_EXAMPLES


def test_the_signature_is_twilios(forwarding_world: ReceiveWorld) -> None:
    # The fixture signs with twilio's own RequestValidator; a stale copy would hide bugs.
    assert (
        sign(
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            [
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", "+12349013030"),
                ("Digits", "1234"),
                ("From", "+12349013030"),
                ("To", "+18005551212"),
            ],
            "12345",
        )
        == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )
