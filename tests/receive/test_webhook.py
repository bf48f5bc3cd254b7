"""Pure logic of the receive Lambda (`receive_lambda`: event, form, signature, decision,
config) and its token cache."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lambda_shared.logs import mask_number
from lambda_shared.twilio_credentials import MissingCredentials, credentials_of
from lambda_shared.webhook_bounds import MAX_BODY_BYTES, MAX_FIELDS, MAX_QUERY_PARAMETERS
from receive_lambda import adapters
from receive_lambda.config import ReceiveConfig
from receive_lambda.decision import Publish, TooLong, Unbound, decide
from receive_lambda.errors import BadRequest, ConfigurationError, Forbidden
from receive_lambda.event import parse_event
from receive_lambda.form import FormParams, parse_form
from receive_lambda.signature import (
    MAX_CANDIDATE_URLS,
    authenticate,
    candidate_urls,
    signature_is_valid,
)

# Twilio's documented example (see twilio-python's RequestValidator tests).
DOC_TOKEN = "12345"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def event(
    body: str, *, domain: str, path: str, query: list[tuple[str, str]], signature: str
) -> dict[str, Any]:
    return {
        "body": b64(body),
        "signature": b64(signature),
        "domain": b64(domain),
        "path": b64(path),
        "query": [{"name": b64(k), "value": b64(v)} for k, v in query],
        "request_id": b64("r-1"),
    }


DOC_BODY = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in DOC_PARAMS.items())


@pytest.mark.parametrize("query", [[("foo", "1"), ("bar", "2")], [("bar", "2"), ("foo", "1")]])
def test_twilios_documented_example_validates_whatever_order_api_gateway_reports(
    query: list[tuple[str, str]],
) -> None:
    request = parse_event(
        event(
            DOC_BODY,
            domain="mycompany.com",
            path="/myapp.php",
            query=query,
            signature=DOC_SIGNATURE,
        )
    )
    assert signature_is_valid(request, DOC_TOKEN)
    assert not signature_is_valid(request, "54321")


def test_documented_example_fails_with_another_path_or_parameter() -> None:
    query = [("foo", "1"), ("bar", "2")]
    other_path = parse_event(
        event(
            DOC_BODY,
            domain="mycompany.com",
            path="/v1/myapp.php",
            query=query,
            signature=DOC_SIGNATURE,
        )
    )
    assert not signature_is_valid(other_path, DOC_TOKEN)
    extra = parse_event(
        event(
            DOC_BODY + "&Body=x",
            domain="mycompany.com",
            path="/myapp.php",
            query=query,
            signature=DOC_SIGNATURE,
        )
    )
    assert not signature_is_valid(extra, DOC_TOKEN)


def test_candidate_urls_without_query_is_just_the_url_called() -> None:
    urls = list(candidate_urls("api.example.com", "/base/message", []))
    assert urls == ["https://api.example.com/base/message"]


def test_candidate_urls_cover_orders_and_spellings() -> None:
    urls = set(candidate_urls("h.example", "/m", [("b", "x y"), ("a", "/")]))
    assert "https://h.example/m?a=/&b=x%20y" in urls
    assert "https://h.example/m?b=x+y&a=%2F" in urls
    # Every order of MAX_QUERY_PARAMETERS parameters, each in every spelling: no more.
    most = [(str(i), "a b/") for i in range(MAX_QUERY_PARAMETERS)]
    all_urls = list(candidate_urls("h", "/m", most))
    assert len(all_urls) == len(set(all_urls)) == MAX_CANDIDATE_URLS == 24 * 3
    with pytest.raises(ValueError):
        list(candidate_urls("h", "/m", [*most, ("x", "1")]))


@pytest.mark.parametrize(
    "bad_event",
    [
        None,
        [],
        {},
        {"body": "!!", "signature": "", "domain": "", "path": ""},
        {**event("a=1", domain="h", path="/m", query=[], signature=""), "query": "x"},
        {**event("a=1", domain="h", path="m", query=[], signature="")},
        {**event("a=1", domain="h/evil", path="/m", query=[], signature="")},
        {**event("a=1", domain="h", path="/m", query=[], signature=""), "query": [1]},
    ],
)
def test_malformed_events_are_bad_requests(bad_event: Any) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_event(bad_event)
    assert str(raised.value).startswith("BadRequest: ")


def test_body_up_to_the_limit_is_parsed_and_one_byte_more_is_a_bad_request() -> None:
    body = "Body=" + "x" * (MAX_BODY_BYTES - len("Body="))
    request = parse_event(event(body, domain="h", path="/m", query=[], signature=""))
    assert len(request.form["Body"][0]) == MAX_BODY_BYTES - 5
    for too_large in (body + "x", body + "x" * 3, "x" * (10 * 1024 * 1024)):
        with pytest.raises(BadRequest, match="larger than 65536 bytes"):
            parse_event(event(too_large, domain="h", path="/m", query=[], signature=""))


def test_more_query_parameters_than_supported_is_a_bad_request() -> None:
    query = [(f"p{i}", "v") for i in range(MAX_QUERY_PARAMETERS)]
    allowed = parse_event(event("", domain="h", path="/m", query=query, signature=""))
    assert allowed.query == tuple(query)
    with pytest.raises(BadRequest, match="5 query parameters; at most 4"):
        parse_event(event("", domain="h", path="/m", query=[*query, ("p9", "v")], signature=""))


@pytest.mark.parametrize(
    "signature",
    [
        "not base64 at all",
        DOC_SIGNATURE[:-1],  # 27 characters
        DOC_SIGNATURE + "A",
        DOC_SIGNATURE[:-1] + "A",  # no padding
        DOC_SIGNATURE[:26] + "R=",  # not canonical: 2 low bits of the 27th are not 0
        DOC_SIGNATURE[:25] + "-_=",  # URL-safe alphabet
        " " + DOC_SIGNATURE,
        DOC_SIGNATURE + "\n",
        "A" * 43 + "=",  # HMAC-SHA256 length
    ],
)
def test_malformed_signature_is_forbidden_before_any_hmac_or_secret_read(
    signature: str, hmacs: list[int]
) -> None:
    request = parse_event(event(DOC_BODY, domain="h", path="/m", query=[], signature=signature))
    tokens = FakeTokens()
    with pytest.raises(Forbidden, match="not an HMAC-SHA1 signature"):
        authenticate(request, tokens)
    assert tokens.reads == 0 and hmacs == []


def test_missing_signature_is_forbidden_without_reading_the_secret(hmacs: list[int]) -> None:
    request = parse_event(event(DOC_BODY, domain="h", path="/m", query=[], signature=""))
    tokens = FakeTokens()
    with pytest.raises(Forbidden, match="missing X-Twilio-Signature"):
        authenticate(request, tokens)
    assert tokens.reads == 0 and hmacs == []


class FakeTokens:
    """A token source mid-rotation (primary and secondary) whose tokens have always just
    been rotated again (the worst case)."""

    def __init__(self) -> None:
        self.reads = 0

    def current(self) -> tuple[str, ...]:
        self.reads += 1
        return ("cached-token", "cached-secondary")

    def refreshed(self) -> tuple[str, ...]:
        self.reads += 1
        return ("rotated-token", "rotated-secondary")


def test_worst_allowed_forgery_costs_a_bounded_number_of_hmacs(hmacs: list[int]) -> None:
    # The most query parameters allowed, each spelled 3 different ways (so no candidate URL
    # is a duplicate), the largest body, a well-formed wrong signature, and a token source
    # that yields a second token to retry with.
    query = [(f"p{i}", "a b/") for i in range(MAX_QUERY_PARAMETERS)]
    body = "Body=" + "x" * (MAX_BODY_BYTES - len("Body="))
    request = parse_event(
        event(body, domain="h.example", path="/m", query=query, signature="A" * 27 + "=")
    )
    urls = list(candidate_urls(request.domain, request.path, request.query))
    assert len(urls) == MAX_CANDIDATE_URLS  # the worst case: no URL deduplicated
    with pytest.raises(Forbidden):
        authenticate(request, FakeTokens())
    # 4 tokens (2 cached, 2 refreshed) x 72 URLs x 2 HMACs (twilio tries each URL with and
    # without its port); refreshes are rate-limited, so most forgeries cost half of this.
    assert 0 < len(hmacs) <= 4 * MAX_CANDIDATE_URLS * 2 == 576
    # Each over the URL (with ":443" at most) and the form's names and values.
    longest_url = max(len(url) for url in urls) + len(":443")
    assert max(hmacs) <= longest_url + MAX_BODY_BYTES


def test_parse_form_keeps_every_value_exactly() -> None:
    form = parse_form("Body=a%2Bb+c%3D%26%25&Body=&x=%F0%9F%98%80&MediaUrl0=")
    assert form == {"Body": ["a+b c=&%", ""], "x": ["😀"], "MediaUrl0": [""]}
    assert parse_form("") == {}


def test_too_many_fields_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        parse_form("&".join(["a=1"] * (MAX_FIELDS + 1)))


CONFIG = ReceiveConfig(topic_prefix="sms", body_limit=5)
THINGS = {"+15555550100": "t1"}
# The resource names the stack gives the receive Lambda's environment.
CONFIG_RESOURCES = {
    "TWILIO_SECRET_NAME": "s",
    "IDEMPOTENCY_TABLE": "t",
    "BINDINGS_TABLE": "b",
    "MAILBOX_TABLE": "m",
    "MAILBOX_RETENTION_SECONDS": "604800",
}


def form(**fields: str) -> Any:
    base = {
        "MessageSid": "SM" + "f" * 32,
        "From": "+16665550123",
        "To": "+15555550100",
        "Body": "hi",
    }
    return FormParams({k: [v] for k, v in {**base, **fields}.items()})


def test_decide_publishes_the_contract_message() -> None:
    decision = decide(form(), CONFIG, THINGS)
    assert isinstance(decision, Publish)
    assert decision.topic == "sms/t1/inbound"
    assert json.loads(decision.payload) == {
        "Type": "Incoming",
        "Id": "SM" + "f" * 32,
        "From": "+16665550123",
        "To": "+15555550100",
        "Body": "hi",
        "Media": [],
    }


def test_decide_unbound_and_too_long() -> None:
    assert isinstance(decide(form(To="+17775550100"), CONFIG, THINGS), Unbound)
    too_long = decide(form(Body="a<b&c"), CONFIG, THINGS)  # 5 characters: allowed
    assert isinstance(too_long, Publish)
    too_long = decide(form(Body="a<b&cd"), CONFIG, THINGS)
    assert isinstance(too_long, TooLong)
    assert "limited to 5 characters; yours had 6" in too_long.twiml


@pytest.mark.parametrize(
    "fields",
    [
        {"NumMedia": "1"},
        {"NumMedia": "11"},
        {"MediaUrl0": "https://x/1"},
        {"NumMedia": "1", "MediaUrl0": "http://x/1", "MediaContentType0": "image/png"},
        {"NumMedia": "1", "MediaUrl0": "https://x/1", "MediaContentType0": "png"},
        {"NumMedia": "1", "MediaUrl0": "https://x/a b", "MediaContentType0": "image/png"},
        {"MessageSid": "SMxyz"},
        {"From": "x" * 257},
    ],
)
def test_decide_rejects_invalid_fields(fields: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        decide(form(**fields), CONFIG, THINGS)


def test_config_from_environment_rejects_unknown_extra_fields() -> None:
    with pytest.raises(ConfigurationError):
        ReceiveConfig.from_environ({**CONFIG_RESOURCES, "EXTRA_FIELDS": "Password"})
    config = ReceiveConfig.from_environ(
        {**CONFIG_RESOURCES, "EXTRA_FIELDS": "FromCity,WaId", "BODY_LIMIT": "9"}
    )
    assert config.extra_fields == ("FromCity", "WaId") and config.body_limit == 9
    assert (config.secret_name, config.idempotency_table, config.bindings_table) == (
        "s",
        "t",
        "b",
    )
    assert (config.mailbox_table, config.mailbox_retention_seconds) == ("m", 604800)


@pytest.mark.parametrize("missing", ["IDEMPOTENCY_TABLE", "BINDINGS_TABLE", "MAILBOX_TABLE"])
def test_config_from_environment_names_a_missing_resource(missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        ReceiveConfig.from_environ({k: v for k, v in CONFIG_RESOURCES.items() if k != missing})


def test_mask_number_hides_the_middle() -> None:
    assert mask_number("+15551234567") == "+15*******67"
    assert mask_number("12345") == "*****"


class FakeSecret:
    """The secret as `read_twilio_credentials` sees it: a forced read after a rotation
    returns the next token."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls: list[bool] = []

    def __call__(self, secret_name: str, *, force: bool) -> Any:
        self.calls.append(force)
        if force and len(self.tokens) > 1:
            self.tokens.pop(0)
        return credentials_of({"account_sid": "AC", "auth_token": self.tokens[0]}, secret_name)


def test_token_source_refreshes_at_most_once_per_interval() -> None:
    now = [100.0]
    secret = FakeSecret("old", "new")
    tokens = adapters.SecretTokenSource("s", read=secret, clock=lambda: now[0])
    assert tokens.current() == ("old",)
    assert tokens.refreshed() == ("new",)
    assert tokens.refreshed() is None
    now[0] += adapters.MIN_REFRESH_INTERVAL_SECONDS
    assert tokens.refreshed() == ("new",)
    assert secret.calls == [False, True, True]


def test_placeholder_token_names_the_put_secret_value_step() -> None:
    tokens = adapters.SecretTokenSource("text-device/dev/twilio", read=FakeSecret(""))
    with pytest.raises(
        MissingCredentials, match="put-secret-value --secret-id text-device/dev/twilio"
    ):
        tokens.current()
