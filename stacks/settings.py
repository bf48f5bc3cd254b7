"""Typed per-environment settings, parsed from `cdk.json` context by `app.py`.

Validation happens here, at synth time, so a typo in `cdk.json` fails `cdk synth` with a
message that names the environment and the key instead of a half-working deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import contract

# -- Inbound safety (issue 11): who may text a device, replay window, throttle sizing -----
MAX_REPLAY_WINDOW_DAYS = 3650
MIN_THROTTLE_RATE = 25.0
MIN_THROTTLE_BURST = 50
THROTTLE_BURST_PER_DEVICE = 2
"""Simultaneous texts each device can receive before API Gateway answers 429 (which
Twilio does not retry): every device texted at once, twice, fits in the default burst."""
MAX_THROTTLE_RATE = 10_000.0  # API Gateway's default account-level limits per region
MAX_THROTTLE_BURST = 5_000
MAX_ALLOWED_SENDERS_BYTES = 2048
"""`allowed_senders` travels in the receive Lambda's environment (4 KB for all variables):
about 60 numbers in all, checked here rather than failing the deployment."""


def _power_of_two_from(count: int) -> int:
    """The smallest power of two >= `count` (1 for 0)."""
    return 1 << max(count - 1, 0).bit_length()


def default_throttle(device_count: int) -> tuple[float, int]:
    """(rate per second, burst) sized so every device can receive texts at the same moment:
    a text per device per second, a burst of `THROTTLE_BURST_PER_DEVICE` per device, each
    rounded up to a power of two, so adding a device changes the stage only when the fleet
    doubles (the API stack stays untouched by a device added to its shard)."""
    rate = max(MIN_THROTTLE_RATE, float(_power_of_two_from(device_count)))
    burst = _power_of_two_from(THROTTLE_BURST_PER_DEVICE * device_count)
    return (min(rate, MAX_THROTTLE_RATE), min(max(MIN_THROTTLE_BURST, burst), MAX_THROTTLE_BURST))


def parse_inbound_safety(
    raw: Mapping[str, Any], devices: Mapping[str, str], fail: Any
) -> dict[str, Any]:
    """The inbound-safety settings of one environment, validated; `fail(message)` makes
    the SettingsError that names the environment. `allowed_senders` must name devices of
    `devices` when `raw` lists them (devices/{env}/devices.json is read after cdk.json's
    part is checked alone)."""
    allowed = raw.get("allowed_senders", {})
    if not isinstance(allowed, Mapping):
        raise fail("'allowed_senders' must map thing names to lists of sender numbers")
    for thing, senders in allowed.items():
        if "devices" in raw and thing not in devices:
            raise fail(f"'allowed_senders' names {thing!r}, which is not one of 'devices'")
        if (
            not isinstance(senders, list)
            or not senders
            or not all(contract.is_sender_address(s) for s in senders)
        ):
            raise fail(
                f"'allowed_senders' of {thing!r} must be a non-empty list of E.164 numbers "
                "or channel addresses such as whatsapp:+15551234567"
            )
    if len(json.dumps(allowed, separators=(",", ":"))) > MAX_ALLOWED_SENDERS_BYTES:
        raise fail(
            f"'allowed_senders' is over {MAX_ALLOWED_SENDERS_BYTES} bytes of JSON: it is "
            "part of the receive Lambda's environment (4 KB in all)"
        )
    replay = raw.get("replay_window_days", contract.DEFAULT_REPLAY_WINDOW_DAYS)
    if not _is_int(replay) or not 1 <= replay <= MAX_REPLAY_WINDOW_DAYS:
        raise fail(f"'replay_window_days' must be an integer from 1 to {MAX_REPLAY_WINDOW_DAYS}")
    default_rate, default_burst = default_throttle(len(devices))
    rate = raw.get("throttle_rate_limit", default_rate)
    burst = raw.get("throttle_burst_limit", default_burst)
    if (
        not isinstance(rate, (int, float))
        or isinstance(rate, bool)
        or not 1 <= rate <= MAX_THROTTLE_RATE
        or not _is_int(burst)
        or not 1 <= burst <= MAX_THROTTLE_BURST
    ):
        raise fail(
            f"'throttle_rate_limit' must be from 1 to {MAX_THROTTLE_RATE:.0f} and "
            f"'throttle_burst_limit' an integer from 1 to {MAX_THROTTLE_BURST}"
        )
    if burst < len(devices):
        raise fail(
            f"'throttle_burst_limit' {burst} is below the number of devices ({len(devices)}): "
            "texts to every device at once would get 429, which Twilio does not retry"
        )
    return {
        "allowed_senders": {thing: tuple(senders) for thing, senders in allowed.items()},
        "replay_window_days": replay,
        "throttle_rate_limit": float(rate),
        "throttle_burst_limit": burst,
    }


MAILBOX_EXPIRY_ACTIONS = ("count", "notify_sender")
"""What the sweeper does with a message its device did not take within the retention."""
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
)


DEFAULT_SEND_RESERVED_CONCURRENCY = 5


class SettingsError(ValueError):
    """A setting in `cdk.json` context is missing or invalid."""


@dataclass(frozen=True, kw_only=True)
class EnvironmentSettings:
    """Everything that differs between environments (dev, prod, ...)."""

    name: str
    region: str
    account: str | None = None
    devices: Mapping[str, str] = field(default_factory=dict)
    """Thing name -> the Twilio number (E.164) bound to it."""
    topic_prefix: str = contract.DEFAULT_TOPIC_PREFIX
    body_limit: int = contract.DEFAULT_BODY_LIMIT
    """Longest inbound body (characters) forwarded to a device."""
    log_retention_days: int = 30
    extra_fields: tuple[str, ...] = ()
    """Webhook parameters forwarded to the device besides the contract's fields."""
    destination_allow_list: tuple[str, ...] = ()
    """Numbers every device may text besides those that texted it (see reply_window_days)."""
    status_callback: bool = False
    configure_twilio_number: bool = False
    """Point each bound number's SmsUrl at the webhook on deploy (custom resource)."""
    fallback_url: str | None = None
    alarm_email: str | None = None
    throttle_rate_limit: float = MIN_THROTTLE_RATE
    """API Gateway stage rate (requests/s); default from the number of devices."""
    throttle_burst_limit: int = MIN_THROTTLE_BURST
    """API Gateway stage burst; default from the number of devices, never below it."""
    allowed_senders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Thing -> the only senders whose texts reach it; a thing not listed accepts anyone."""
    replay_window_days: int = contract.DEFAULT_REPLAY_WINDOW_DAYS
    """How long a MessageSid is remembered, so a replayed webhook is not published again."""
    retain_data: bool = False
    """Keep tables, queues and logs when the stack is deleted (set for prod)."""
    # -- Outbound policy: whom a device may text, and how much (safe by default). --------
    reply_window_days: int = contract.DEFAULT_REPLY_WINDOW_DAYS
    """A device may text a number that texted it within this many days (0: allow-lists only)."""
    destination_allow_list_by_device: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per device, numbers it may text besides those that texted it."""
    destination_prefixes: tuple[str, ...] = ()
    """If not empty, every destination must start with one of these (`+1`, `+44`...)."""
    send_limit_per_minute: int = contract.DEFAULT_SEND_LIMIT_PER_MINUTE
    send_limit_per_day: int = contract.DEFAULT_SEND_LIMIT_PER_DAY
    """Per device: sends beyond a cap are refused (dead-lettered with the reason)."""
    send_reserved_concurrency: int | None = DEFAULT_SEND_RESERVED_CONCURRENCY
    """The send Lambda's reserved concurrency (None, `false` in cdk.json: none, for accounts
    whose concurrency quota is still 10, where Lambda refuses any reservation)."""
    device_shards: int = 32
    """Nested stacks the devices are spread over (by a hash of the thing name). Never change
    it once deployed: every device would move to another stack and be replaced."""
    mailbox_retention_days: int = contract.DEFAULT_MAILBOX_RETENTION_DAYS
    """How long a message waits in the mailbox for its device before it expires."""
    mailbox_expiry_action: str = "count"
    """`count`: expired messages are counted (metric) and logged by Id; `notify_sender`:
    also text the sender that the device did not get the message."""
    mailbox_alarm_age_minutes: int = 60
    """Alarm when the oldest message still waiting for a device is older than this."""

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack of this environment."""
        return contract.stack_name(self.name)

    @property
    def things_by_number(self) -> dict[str, str]:
        """Twilio number -> the thing bound to it (the webhook's lookup)."""
        return {number: thing for thing, number in self.devices.items()}


def parse_environment(name: str, raw: Mapping[str, Any]) -> EnvironmentSettings:
    """Build and validate one environment's settings from its `cdk.json` context entry."""

    def fail(message: str) -> SettingsError:
        return SettingsError(f"cdk.json context environments.{name}: {message}")

    known = set(EnvironmentSettings.__dataclass_fields__) - {"name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    if not isinstance(raw.get("region"), str) or not raw["region"]:
        raise fail("'region' is required, for example \"eu-west-1\"")

    devices = raw.get("devices", {})
    if not isinstance(devices, Mapping):
        raise fail("'devices' must map thing names to E.164 numbers")
    for thing, number in devices.items():
        if not contract.THING_NAME.match(thing):
            raise fail(f"thing name {thing!r} is not a valid AWS IoT thing name")
        if not contract.is_e164(number):
            raise fail(f"device {thing!r} is bound to an invalid number (E.164 expected)")
    if len(set(devices.values())) != len(devices):
        raise fail("two devices are bound to the same number")

    prefix = raw.get("topic_prefix", contract.DEFAULT_TOPIC_PREFIX)
    if (
        not isinstance(prefix, str)
        or not contract.TOPIC_LEVEL.match(prefix)
        or prefix.startswith("$")
    ):
        raise fail("'topic_prefix' must be one MQTT topic level of letters, digits, - or _")
    body_limit = raw.get("body_limit", contract.DEFAULT_BODY_LIMIT)
    limit = contract.MAX_BODY_CHARACTERS
    if not isinstance(body_limit, int) or not 1 <= body_limit <= limit:
        raise fail(f"'body_limit' must be an integer from 1 to {limit}")
    retention = raw.get("log_retention_days", 30)
    if retention not in LOG_RETENTION_DAYS:
        raise fail(f"'log_retention_days' must be one of {sorted(LOG_RETENTION_DAYS)}")
    extra = tuple(raw.get("extra_fields", ()))
    bad = sorted(set(extra) - set(contract.FORWARDABLE_FIELDS))
    if bad:
        raise fail(f"'extra_fields' has unknown webhook parameter(s) {', '.join(bad)}")
    worst = contract.worst_case_payload_bytes(body_limit, extra)
    if worst > contract.MAX_DEVICE_PAYLOAD_BYTES:
        raise fail(
            f"'body_limit' {body_limit} cannot fit the board: in the worst case (6-byte "
            f"escaped characters, 10 media, the extra fields) a message takes {worst} bytes, "
            f"more than the {contract.MAX_DEVICE_PAYLOAD_BYTES} bytes the ESP8266 can "
            f"receive; at most {contract.largest_body_limit(extra)} with these extra fields"
        )
    allow = tuple(raw.get("destination_allow_list", ()))
    for number in allow:
        if not contract.is_e164(number):
            raise fail("'destination_allow_list' must hold E.164 numbers")
    fallback = raw.get("fallback_url")
    if fallback is not None and (
        not isinstance(fallback, str) or not fallback.startswith("https://")
    ):
        raise fail("'fallback_url' must be an https:// URL")
    inbound_safety = parse_inbound_safety(raw, devices, fail)
    shards = raw.get("device_shards", 32)
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 100:
        raise fail("'device_shards' must be an integer from 1 to 100")
    for flag in ("status_callback", "configure_twilio_number", "retain_data"):
        if not isinstance(raw.get(flag, False), bool):
            raise fail(f"'{flag}' must be true or false")
    mailbox_retention = raw.get("mailbox_retention_days", contract.DEFAULT_MAILBOX_RETENTION_DAYS)
    longest = contract.MAX_MAILBOX_RETENTION_DAYS
    if not isinstance(mailbox_retention, int) or not 1 <= mailbox_retention <= longest:
        raise fail(f"'mailbox_retention_days' must be an integer from 1 to {longest}")
    expiry_action = raw.get("mailbox_expiry_action", "count")
    if expiry_action not in MAILBOX_EXPIRY_ACTIONS:
        raise fail(f"'mailbox_expiry_action' must be one of {', '.join(MAILBOX_EXPIRY_ACTIONS)}")
    alarm_age = raw.get("mailbox_alarm_age_minutes", 60)
    if not isinstance(alarm_age, int) or alarm_age < 5:
        raise fail("'mailbox_alarm_age_minutes' must be an integer of at least 5")

    policy = parse_outbound_policy(raw, devices, fail)
    return EnvironmentSettings(
        name=name,
        region=raw["region"],
        account=raw.get("account"),
        devices=dict(devices),
        topic_prefix=prefix,
        body_limit=body_limit,
        log_retention_days=retention,
        extra_fields=extra,
        destination_allow_list=allow,
        status_callback=raw.get("status_callback", False),
        configure_twilio_number=raw.get("configure_twilio_number", False),
        fallback_url=fallback,
        alarm_email=raw.get("alarm_email"),
        retain_data=raw.get("retain_data", False),
        **inbound_safety,
        **policy,
        device_shards=shards,
        mailbox_retention_days=mailbox_retention,
        mailbox_expiry_action=expiry_action,
        mailbox_alarm_age_minutes=alarm_age,
    )


# -- Outbound policy settings ----------------------------------------------------------------
MAX_REPLY_WINDOW_DAYS = 365
MAX_PER_MINUTE = 1000
MAX_PER_DAY = 100_000
MAX_RESERVED_CONCURRENCY = 1000
# A calling-code prefix: + and 1 to 15 digits, no leading zero (E.164's first digit).
PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_outbound_policy(
    raw: Mapping[str, Any], devices: Mapping[str, str], fail: Callable[[str], SettingsError]
) -> dict[str, Any]:
    """The outbound policy's settings of one environment, validated (keyword arguments of
    EnvironmentSettings)."""
    window = raw.get("reply_window_days", contract.DEFAULT_REPLY_WINDOW_DAYS)
    if not _is_int(window) or not 0 <= window <= MAX_REPLY_WINDOW_DAYS:
        raise fail(f"'reply_window_days' must be an integer from 0 to {MAX_REPLY_WINDOW_DAYS}")
    by_device = raw.get("destination_allow_list_by_device", {})
    if not isinstance(by_device, Mapping):
        raise fail("'destination_allow_list_by_device' must map thing names to lists of numbers")
    for thing, numbers in by_device.items():
        # The devices come from devices/{env}/devices.json: checked once they are given.
        if "devices" in raw and thing not in devices:
            raise fail(f"'destination_allow_list_by_device' names {thing!r}, not a device")
        if not isinstance(numbers, list) or not all(contract.is_e164(n) for n in numbers):
            raise fail(f"'destination_allow_list_by_device.{thing}' must hold E.164 numbers")
    prefixes = raw.get("destination_prefixes", [])
    if not isinstance(prefixes, list) or not all(
        isinstance(p, str) and PREFIX.match(p) for p in prefixes
    ):
        raise fail('\'destination_prefixes\' must hold prefixes like "+1" or "+44"')
    per_minute = raw.get("send_limit_per_minute", contract.DEFAULT_SEND_LIMIT_PER_MINUTE)
    per_day = raw.get("send_limit_per_day", contract.DEFAULT_SEND_LIMIT_PER_DAY)
    if not _is_int(per_minute) or not 1 <= per_minute <= MAX_PER_MINUTE:
        raise fail(f"'send_limit_per_minute' must be an integer from 1 to {MAX_PER_MINUTE}")
    if not _is_int(per_day) or not per_minute <= per_day <= MAX_PER_DAY:
        raise fail(
            f"'send_limit_per_day' must be an integer from send_limit_per_minute to {MAX_PER_DAY}"
        )
    # `false`, not null, switches it off: CDK drops null values from context.
    reserved = raw.get("send_reserved_concurrency", DEFAULT_SEND_RESERVED_CONCURRENCY)
    if reserved is not False and (
        not _is_int(reserved) or not 1 <= reserved <= MAX_RESERVED_CONCURRENCY
    ):
        raise fail(
            f"'send_reserved_concurrency' must be false or an integer from 1 to "
            f"{MAX_RESERVED_CONCURRENCY}"
        )
    return {
        "reply_window_days": window,
        "destination_allow_list_by_device": {t: tuple(n) for t, n in by_device.items()},
        "destination_prefixes": tuple(prefixes),
        "send_limit_per_minute": per_minute,
        "send_limit_per_day": per_day,
        "send_reserved_concurrency": None if reserved is False else reserved,
    }
