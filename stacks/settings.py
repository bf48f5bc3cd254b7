"""Typed per-environment settings, parsed from `cdk.json` context by `app.py`.

Validation happens here, at synth time, so a typo in `cdk.json` fails `cdk synth` with a
message that names the environment and the key instead of a half-working deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import contract

MAILBOX_EXPIRY_ACTIONS = ("count", "notify_sender")
"""What the sweeper does with a message its device did not take within the retention."""
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
)


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
    """If not empty, the only numbers a device may text."""
    status_callback: bool = False
    configure_twilio_number: bool = False
    """Point each bound number's SmsUrl at the webhook on deploy (custom resource)."""
    fallback_url: str | None = None
    alarm_email: str | None = None
    throttle_rate_limit: float = 10.0
    throttle_burst_limit: int = 20
    retain_data: bool = False
    """Keep tables, queues and logs when the stack is deleted (set for prod)."""
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
    rate = raw.get("throttle_rate_limit", 10.0)
    burst = raw.get("throttle_burst_limit", 20)
    if not isinstance(rate, (int, float)) or rate <= 0 or not isinstance(burst, int) or burst < 1:
        raise fail("'throttle_rate_limit' and 'throttle_burst_limit' must be positive")
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
        throttle_rate_limit=float(rate),
        throttle_burst_limit=burst,
        retain_data=raw.get("retain_data", False),
        device_shards=shards,
        mailbox_retention_days=mailbox_retention,
        mailbox_expiry_action=expiry_action,
        mailbox_alarm_age_minutes=alarm_age,
    )
