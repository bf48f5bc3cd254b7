"""The mailbox's cloud side in the local loop: its Lambdas, its two topic rules, the schedule.

From the synthesized template: the device-request and sweeper functions run their real
handlers (`loop.lambda_runtime.LocalFunction`) with the template's environment, the ack and
redeliver rules' SQL is routed by `loop.cloud.RuleRouter`, and EventBridge's schedule is
`sweep()`, which the loop (or a test) calls when the schedule would fire.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loop.aws_local import LocalResources, find_by_path
from loop.cloud import CloudClient, RuleQuery, RuleRouter
from loop.lambda_runtime import LambdaError, LocalFunction
from loop.stack import ROOT

RULES = ("AckRule", "RedeliverRule")


class LocalMailbox:
    """Starts the mailbox's functions and rules; `close()` stops them."""

    def __init__(
        self,
        *,
        template: Mapping[str, Any],
        aws: LocalResources,
        cloud: CloudClient,
        endpoints: Mapping[str, str],
        workdir: Path,
        retry_delay_s: float,
        on_event: Callable[[str, str], None],
        on_rule_error: Callable[[str, bytes, str], None],
        environment_overrides: Mapping[str, str] | None = None,
    ) -> None:
        """`environment_overrides`: variables set on top of the template's (tests shorten
        the retention this way); `on_event(where, what)` traces what happens."""
        self._on_event = on_event
        resources = template["Resources"]
        self.functions: dict[str, LocalFunction] = {}
        for name in ("DeviceRequests", "Sweeper"):
            logical_id = find_by_path(
                template, "AWS::Lambda::Function", f"Mailbox/{name}/Function/Resource"
            )
            self.functions[name] = LocalFunction(
                f"mailbox-{name.lower()}",
                ROOT / "lambdas",
                resources[logical_id]["Properties"]["Handler"],
                {
                    **aws.function_environment(logical_id),
                    **endpoints,
                    **(environment_overrides or {}),
                },
                log_path=workdir / f"mailbox-{name.lower()}.log",
                concurrency=1 if name == "Sweeper" else 2,
            )
        self.routers: list[RuleRouter] = []
        for rule_name in RULES:
            rule_id = find_by_path(template, "AWS::IoT::TopicRule", f"Mailbox/{rule_name}")
            sql = resources[rule_id]["Properties"]["TopicRulePayload"]["Sql"]
            self.routers.append(
                RuleRouter(
                    cloud,
                    RuleQuery.parse(sql),
                    self.functions["DeviceRequests"],
                    retry_attempts=2,  # Lambda's default for asynchronous invocations
                    retry_delay_s=retry_delay_s,
                    on_failure=self._failed,
                    on_rule_error=on_rule_error,
                    on_success=self._served,
                )
            )
        for function in self.functions.values():
            function.warm_up()

    def sweep(self) -> dict[str, Any]:
        """Runs the sweeper as the schedule would; returns what it reported."""
        result: dict[str, Any] = self.functions["Sweeper"].invoke(
            {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        )
        self._on_event("mailbox sweeper", str(result))
        return result

    def _served(self, event: Mapping[str, Any], result: Any) -> None:
        self._on_event(f"mailbox {event.get('request')}", f"{event.get('thing')}: {result}")

    def _failed(self, event: Mapping[str, Any], error: LambdaError) -> None:
        # Lambda drops an async event after its retries when no destination is set: the
        # message stays in the mailbox, where the sweeper's age metric shows it.
        self._on_event("mailbox request failed", f"{event.get('request')}: {error}")

    def close(self) -> None:
        """Waits for requests under way, then stops the functions."""
        for router in self.routers:
            router.close()
        for function in self.functions.values():
            function.close()
