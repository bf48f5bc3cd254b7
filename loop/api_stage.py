"""The parts of API Gateway's REST stage that sit around the methods, for the local loop.

- `StageThrottle`: the stage's token bucket (`ThrottlingRateLimit` tokens a second, at most
  `ThrottlingBurstLimit`), from the synthesized template. A request without a token is
  answered 429 `{"message":"Too Many Requests"}` before any integration runs, as API
  Gateway does; Twilio does not retry it.
- `StageMetrics`: the stage's `4XXError` / `5XXError` counts (CloudWatch's AWS/ApiGateway
  metrics), so a test can evaluate the template's alarms against what the loop answered.
- `ProxyRoute`: a Lambda proxy integration (`AWS_PROXY`, the status callback's), the
  function running in its own processes like the others.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from loop.apigw_vtl import HttpRequest, HttpResponse
from loop.lambda_runtime import LambdaError, LocalFunction

TOO_MANY_REQUESTS = HttpResponse(
    429, {"Content-Type": "application/json"}, '{"message":"Too Many Requests"}'
)


def _stage(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return next(
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::Stage"
    )


class StageThrottle:
    """A token bucket: `burst` tokens at most, refilled at `rate` a second."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    @classmethod
    def from_template(cls, template: Mapping[str, Any]) -> StageThrottle:
        """The stage's `MethodSettings` for every method (`/*/*`)."""
        settings = next(
            s
            for s in _stage(template)["MethodSettings"]
            if s.get("ResourcePath") == "/*" and s.get("HttpMethod") == "*"
        )
        return cls(float(settings["ThrottlingRateLimit"]), int(settings["ThrottlingBurstLimit"]))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> bool:
        """Takes a token for one request; False means the request is answered 429."""
        with self._lock:
            self._refill()
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def available(self) -> float:
        """Tokens in the bucket now."""
        with self._lock:
            self._refill()
            return self._tokens


class StageMetrics:
    """Answers by status class, as CloudWatch's `4XXError` and `5XXError` count them."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, status: int) -> None:
        """Counts one answer."""
        with self._lock:
            self._counts["Count"] += 1
            if 400 <= status < 500:
                self._counts["4XXError"] += 1
            elif status >= 500:
                self._counts["5XXError"] += 1

    def value(self, metric: str) -> int:
        """The sum of `metric` so far (`Count`, `4XXError` or `5XXError`)."""
        with self._lock:
            return self._counts[metric]


class ProxyRoute:
    """`AWS_PROXY` integration: the request as a REST (v1) proxy event, the function's
    `{"statusCode", "headers", "body"}` as the answer; a function error is a 502."""

    def __init__(self, function: LocalFunction, resource_path: str) -> None:
        self.function = function
        self.resource_path = resource_path

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Invokes the function with the proxy event of `request`."""
        query: dict[str, list[str]] = {}
        for name, value in request.query:
            query.setdefault(name, []).append(value)
        event = {
            "resource": self.resource_path,
            "path": self.resource_path,
            "httpMethod": "POST",
            "headers": dict(request.headers),
            "multiValueHeaders": {k: [v] for k, v in request.headers},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "requestContext": dict(request.context),
            # No binary media types on the API: a form body arrives as text.
            "body": request.body.decode("utf-8", errors="replace") if request.body else None,
            "isBase64Encoded": False,
        }
        try:
            answer = self.function.invoke(event)
        except LambdaError:
            return HttpResponse(
                502, {"Content-Type": "application/json"}, '{"message": "Internal server error"}'
            )
        body = answer.get("body") or ""
        if answer.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        return HttpResponse(int(answer["statusCode"]), dict(answer.get("headers") or {}), body)
