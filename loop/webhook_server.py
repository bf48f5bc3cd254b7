"""API Gateway's REST `POST /message` served over HTTP on loopback.

The method's behaviour comes from the synthesized template through
`loop.apigw_vtl.LambdaMethod` (request template by Content-Type, real Velocity rendering,
selection patterns, response templates); this module adds the HTTP server, the stage and
resource routing, and the receive function running in its own processes.

Twilio is configured with the public URL (`https://{domain}/{stage}/message`); requests
arrive here over plain HTTP on 127.0.0.1, and `$context.domainName` says the public
domain, as it would behind API Gateway's TLS termination.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from loop.api_stage import TOO_MANY_REQUESTS, ProxyRoute, StageMetrics, StageThrottle
from loop.apigw_vtl import HttpRequest, HttpResponse, LambdaMethod, LambdaResult, default_context
from loop.lambda_runtime import LambdaError, LocalFunction

PUBLIC_DOMAIN = "local0api.execute-api.eu-west-1.amazonaws.com"
NO_ROUTE = HttpResponse(
    403, {"Content-Type": "application/json"}, '{"message":"Missing Authentication Token"}'
)


def _stage_name(template: Mapping[str, Any]) -> str:
    return str(
        next(
            r["Properties"]["StageName"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::ApiGateway::Stage"
        )
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of concurrent webhooks; the default backlog is 5


class WebhookEndpoint:
    """Serves the stack's webhook method until `close()`."""

    def __init__(
        self,
        template: Mapping[str, Any],
        function: LocalFunction,
        *,
        path_part: str = "message",
        domain_name: str = PUBLIC_DOMAIN,
        on_response: Callable[[HttpResponse, float], None] | None = None,
        throttle: StageThrottle | None = None,
        proxy_routes: Mapping[str, ProxyRoute] | None = None,
    ) -> None:
        """`throttle`: the stage's token bucket (None: unthrottled); `proxy_routes`: other
        resources of the API (path part -> proxy integration), such as `status`."""
        self.throttle = throttle
        self.metrics = StageMetrics()
        self.proxy_routes = dict(proxy_routes or {})
        self.method = LambdaMethod.from_template(template, path_part)
        self.stage = _stage_name(template)
        self.resource_path = "/" + path_part
        self.domain_name = domain_name
        self.function = function
        self.on_response = on_response
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK hold the body back ~40 ms.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

            def _answer(self, http_method: str) -> None:
                started = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                response = endpoint.handle(http_method, self.path, list(self.headers.items()), body)
                data = response.body.encode("utf-8")
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if endpoint.on_response is not None:
                    endpoint.on_response(response, time.monotonic() - started)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the demo prints its own hops

        self.server = _Server(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/{self.stage}{self.resource_path}"
        self.public_url = f"https://{domain_name}/{self.stage}{self.resource_path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def handle(
        self, http_method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes
    ) -> HttpResponse:
        """One request, answered as API Gateway would answer it (and counted)."""
        response = self._answer(http_method, raw_path, headers, body)
        self.metrics.record(response.status)
        return response

    def _answer(
        self, http_method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes
    ) -> HttpResponse:
        url = urlsplit(raw_path)
        path_part = url.path.removeprefix(f"/{self.stage}/")
        proxy = self.proxy_routes.get(path_part)
        if http_method != "POST" or (
            url.path != f"/{self.stage}{self.resource_path}" and proxy is None
        ):
            return NO_ROUTE
        if self.throttle is not None and not self.throttle.take():
            return TOO_MANY_REQUESTS
        request = HttpRequest(
            body=body,
            headers=headers,
            query=parse_qsl(url.query, keep_blank_values=True),
            context=default_context(
                domain_name=self.domain_name,
                stage=self.stage,
                resource_path="/" + path_part,
                request_id=str(uuid.uuid4()),
            ),
        )
        if proxy is not None:
            return proxy.handle(request)
        return self.method.handle(request, self._invoke)

    def _invoke(self, event: dict[str, Any]) -> LambdaResult:
        try:
            return self.function.invoke(event), None
        except LambdaError as error:
            return {"errorMessage": error.error_message, "errorType": error.error_type}, (
                error.error_message
            )

    def close(self) -> None:
        """Stops serving."""
        self.server.shutdown()
        self.server.server_close()
