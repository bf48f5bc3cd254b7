"""Prism: a mock of Twilio's REST API, validated against Twilio's own OpenAPI contract.

Tests, benchmarks and the offline demo run the Lambdas' real twilio code against it:

    with PrismServer() as prism:
        client = twilio_client(prism.url)
        client.messages.create(to="+15551234567", from_="+15557654321", body="hi")

Every request is checked by Prism against `shared/twilio-oai/twilio_api_v2010.json`
(paths, parameters, types, basic auth); a request Twilio would refuse gets a 4xx here too.
Prism is started from its own binary (`node_modules/.bin/prism`), never through `npx`:
stopping `npx` leaves the server running.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import parse_qs, urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from loop.processes import child_command, child_options, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
PRISM_BIN = ROOT / "node_modules" / ".bin" / "prism"
# shared/ sits beside the repository, in a developer's tree and in CI alike.
TWILIO_SPEC = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
# Prism checks the path parameters' patterns, so test credentials must look real.
TEST_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TEST_AUTH_TOKEN = "test-auth-token"  # noqa: S105 - a fake, only ever sent to loopback
DEFAULT_STARTUP_TIMEOUT = 60.0


class PrismError(RuntimeError):
    """Prism could not be started (missing binary or spec, exited early, never listened)."""


class PrismServer:
    """One `prism mock` process on loopback; a context manager that always stops it."""

    def __init__(
        self,
        spec: Path = TWILIO_SPEC,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self.spec = spec
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL to send Twilio API requests to, e.g. `http://127.0.0.1:41234`."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Starts Prism and returns once it accepts connections (raises PrismError if not)."""
        if self._process is not None:
            return self
        if not PRISM_BIN.exists():
            raise PrismError(f"{PRISM_BIN} is missing: run `npm ci` (or `make deps`)")
        if not self.spec.exists():
            raise PrismError(f"Twilio's OpenAPI spec is missing: {self.spec}")
        # Prism logs every request; a file never fills up like an unread pipe would.
        self._log = tempfile.TemporaryFile(prefix="prism-")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        command = [str(PRISM_BIN), "mock", str(self.spec), "--host", self.host]
        self._process = subprocess.Popen(
            child_command([*command, "--port", str(self.port)]),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            # Own session (Ctrl-C reaches only its owner, which stops it) and dies with it.
            **child_options(),
        )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrismError(
                    f"prism exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        raise PrismError(
            f"prism did not listen within {self.startup_timeout} s:\n{self.log_tail()}"
        )

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of Prism's log, to explain a failure."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - max_bytes))
        return self._log.read().decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Stops Prism (terminate, then kill after 5 s); safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def bracket_form_arrays(data: dict[str, object] | None) -> dict[str, object] | None:
    """Renames list-valued form fields `MediaUrl` to `MediaUrl[]`.

    The twilio library sends an array as repeated keys (`MediaUrl=a&MediaUrl=b`), which
    Twilio accepts; Prism parses form arrays only in bracket style and answers 422
    otherwise. Only the transport used against Prism does this, never production code.
    """
    if not data:
        return data
    return {f"{key}[]" if isinstance(value, list) else key: value for key, value in data.items()}


class LoopbackHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """A TwilioHttpClient that sends every request to `base_url` (Prism or a proxy of it).

    The scheme and host of Twilio's URLs (`https://api.twilio.com/...`) are replaced, the
    path and query are kept, and form arrays are written the way Prism reads them.
    """

    def __init__(self, base_url: str, *, timeout: float | None = 5.0) -> None:
        super().__init__(timeout=timeout)
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._netloc = parts.scheme, parts.netloc

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Sends the request to the loopback server instead of Twilio."""
        parts = urlsplit(url)
        local = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, ""))
        return super().request(
            method,
            local,
            params=params,
            data=bracket_form_arrays(data),
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def twilio_client(
    base_url: str,
    *,
    account_sid: str = TEST_ACCOUNT_SID,
    auth_token: str = TEST_AUTH_TOKEN,
    timeout: float | None = 5.0,
) -> Client:
    """A twilio `Client` whose every request goes to `base_url` (see LoopbackHttpClient)."""
    return Client(
        account_sid, auth_token, http_client=LoopbackHttpClient(base_url, timeout=timeout)
    )


# -- Fault injection ------------------------------------------------------------------------

# Twilio's error bodies (https://www.twilio.com/docs/api/errors), as its API returns them.
TWILIO_ERRORS: dict[str, tuple[int, dict[str, object]]] = {
    "500": (500, {"code": 20500, "message": "Internal Server Error", "status": 500}),
    "503": (503, {"code": 20503, "message": "Service Unavailable", "status": 503}),
    "429": (429, {"code": 20429, "message": "Too Many Requests", "status": 429}),
    # The account's auth token was rotated (or is wrong): Twilio took nothing.
    "401": (401, {"code": 20003, "message": "Authenticate", "status": 401}),
    # The recipient texted STOP to this sender: Twilio refuses to message them.
    "21610": (
        400,
        {
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400,
        },
    ),
    "21211": (
        400,
        {
            "code": 21211,
            "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        },
    ),
    # The same refusal in RFC 9457 "problem details" form, which twilio-python turns into
    # TwilioServiceException instead of TwilioRestException.
    "21211-problem": (
        400,
        {
            "type": "https://www.twilio.com/docs/errors/21211",
            "title": "Invalid 'To' Phone Number",
            "status": 400,
            "code": 21211,
            "detail": "The 'To' number is not a valid phone number.",
        },
    ),
}
HANG = "hang"
"""Fault: never answer in time, and Twilio never got the message (the client times out).

Prism still sees the request, so it is still checked against Twilio's contract, but the
proxy treats it as lost on the way: it is neither counted as sent nor listed afterwards."""
LOST_REPLY = "lost-reply"
"""Fault: Twilio accepted the message but the answer is lost (the client times out)."""
RESET = "reset"
"""Fault: Twilio accepted the message, then the connection is reset before the answer (the
client gets a connection error at once)."""
BAD_GATEWAY_AFTER_ACCEPT = "502-after-accept"
"""Fault: Twilio's API accepted the message, but the client gets a 502 from Twilio's edge
(the load balancer's HTML page, not Twilio's JSON error): an error answer that does not
mean the message was refused."""
EDGE_ERRORS: dict[str, tuple[int, str, bytes]] = {
    BAD_GATEWAY_AFTER_ACCEPT: (
        502,
        "text/html",
        b"<html><head><title>502 Bad Gateway</title></head>"
        b"<body><center><h1>502 Bad Gateway</h1></center></body></html>",
    ),
}
"""Answers of faults that come from in front of Twilio's API: (status, type, body)."""
ACCEPTED_FAULTS = (None, LOST_REPLY, RESET, BAD_GATEWAY_AFTER_ACCEPT)
"""Faults after which Twilio has the message: the client may not know it was sent."""
DEFAULT_PAGE_SIZE = 50  # Twilio's, when a list request gives no PageSize


@dataclass(frozen=True)
class Exchange:
    """One request the proxy saw: what Prism answered and what the client got."""

    method: str
    path: str
    prism_status: int
    fault: str | None
    client_status: int | None
    """None when the client got no answer (hang, lost reply, reset)."""
    body: str = ""
    """The request's body (a form, for Twilio's API)."""

    @property
    def accepted_message(self) -> bool:
        """Twilio would have queued an SMS: a valid Messages create Twilio did not refuse."""
        return (
            _is_create(self.method, self.path)
            and self.prism_status == 201
            and self.fault in ACCEPTED_FAULTS
        )


@dataclass(frozen=True)
class AcceptedMessage:
    """A message the mock Twilio accepted, as its Messages list shows it later."""

    sid: str
    to: str
    from_: str
    body: str
    num_media: int
    date_created: datetime


def _is_create(method: str, path: str) -> bool:
    return method == "POST" and path.split("?", 1)[0].endswith("/Messages.json")


def _is_list(method: str, path: str) -> bool:
    return method == "GET" and path.split("?", 1)[0].endswith("/Messages.json")


def accepted_from_form(body: bytes, *, sid: str, created: datetime) -> AcceptedMessage:
    """The message a Messages create form asks for (MediaUrl in either array style)."""
    form = parse_qs(body.decode(), keep_blank_values=True)
    media = form.get("MediaUrl[]", []) + form.get("MediaUrl", [])
    return AcceptedMessage(
        sid=sid,
        to=form.get("To", [""])[0],
        from_=form.get("From", [""])[0],
        body=form.get("Body", [""])[0],
        num_media=len(media),
        date_created=created.astimezone(UTC).replace(microsecond=0),  # Twilio's resolution
    )


def message_json(template: dict[str, Any], message: AcceptedMessage) -> dict[str, Any]:
    """Prism's example message (Twilio's own example) with `message`'s fields put in.

    Dates are RFC 2822, as Twilio writes them; the message is shown as already sent.
    """
    date = format_datetime(message.date_created)
    uri = str(template.get("uri", ""))
    old_sid = str(template.get("sid", ""))
    return {
        **template,
        "sid": message.sid,
        "to": message.to,
        "from": message.from_,
        "body": message.body,
        "num_media": str(message.num_media),
        "date_created": date,
        "date_sent": date,
        "date_updated": date,
        "uri": uri.replace(old_sid, message.sid) if old_sid else uri,
    }


def messages_page(
    prism_page: dict[str, Any], accepted: list[AcceptedMessage], query: str
) -> dict[str, Any]:
    """Prism's example Messages list page with `messages` built from `accepted`.

    Honours the To and From filters and PageSize (one page, newest first, no next page);
    the DateSent filters are not honoured (the send Lambda does not use them).
    """
    params = parse_qs(query)
    wanted_to, wanted_from = params.get("To", [None])[0], params.get("From", [None])[0]
    try:
        page_size = int(params.get("PageSize", [DEFAULT_PAGE_SIZE])[0] or DEFAULT_PAGE_SIZE)
    except ValueError:
        page_size = DEFAULT_PAGE_SIZE
    examples = prism_page.get("messages") or [{}]
    template = examples[0] if isinstance(examples[0], dict) else {}
    chosen = [
        m
        for m in reversed(accepted)  # newest first, as Twilio lists them
        if (wanted_to is None or m.to == wanted_to)
        and (wanted_from is None or m.from_ == wanted_from)
    ][:page_size]
    return {
        **prism_page,
        "messages": [message_json(template, m) for m in chosen],
        "page": 0,
        "page_size": page_size,
        "start": 0,
        "end": max(len(chosen) - 1, 0),
        "next_page_uri": None,
        "previous_page_uri": None,
    }


def new_message_sid() -> str:
    """A unique SID in Twilio's format (Prism's examples all share one)."""
    return "SM" + uuid.uuid4().hex


class FaultProxy:
    """An HTTP proxy on loopback in front of Prism that injects Twilio's failures.

    Test scaffolding, not production code: it stands in for Twilio's side of a flaky
    network so the send Lambda's retries can be tested against Twilio's contract.

    Every request is forwarded to Prism first, so it is still validated against Twilio's
    contract (a 4xx from Prism is passed through, never masked); then, for requests whose
    path ends with one of `paths`, the next planned fault replaces Prism's answer:
    `plan(lookups=...)` plans those of Messages list requests (GET .../Messages.json),
    `plan(*faults)` those of every other matching request (Messages creates by default).
    Faults: a key of TWILIO_ERRORS, HANG, LOST_REPLY, RESET, BAD_GATEWAY_AFTER_ACCEPT, or
    None (Prism's answer as is).

    It also keeps the state Prism lacks: every create Twilio would have accepted (answered,
    LOST_REPLY, RESET or BAD_GATEWAY_AFTER_ACCEPT; not HANG nor a TWILIO_ERRORS refusal)
    is remembered with a unique SID and the proxy's clock as
    its creation date, and a Messages list request answers with those messages (To/From
    filters, PageSize, newest first) in Prism's example page. So a client can ask "did my
    earlier request go through?" as it would ask Twilio.
    """

    def __init__(
        self,
        upstream: str,
        *,
        paths: tuple[str, ...] = ("/Messages.json",),
        hang_seconds: float = 2.0,
        host: str = "127.0.0.1",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.upstream = urlsplit(upstream)
        self.paths = paths
        self.hang_seconds = hang_seconds
        self.clock = clock
        """Twilio's clock: the creation date of accepted messages."""
        self.exchanges: list[Exchange] = []
        self.accepted: list[AcceptedMessage] = []
        """Messages Twilio would have accepted since the last plan(), oldest first."""
        self._plan: list[str | None] = []
        self._lookups: list[str | None] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to point a LoopbackHttpClient at."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def plan(self, *faults: str | None, lookups: tuple[str | None, ...] = ()) -> None:
        """Faults for the next matching requests (`faults`) and Messages list requests
        (`lookups`), in order; then Prism's answers as is. Starts a new scenario: the
        exchanges and accepted messages seen so far are forgotten."""
        with self._lock:
            self._plan = list(faults)
            self._lookups = list(lookups)
            self.exchanges.clear()
            self.accepted.clear()

    def messages_accepted(self) -> int:
        """How many SMS Twilio would have sent so far."""
        with self._lock:
            return sum(1 for exchange in self.exchanges if exchange.accepted_message)

    def _next_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            if not path.split("?", 1)[0].endswith(self.paths):
                return None
            queue = self._lookups if _is_list(method, path) else self._plan
            return queue.pop(0) if queue else None

    def _record(self, exchange: Exchange, accepted: AcceptedMessage | None = None) -> None:
        with self._lock:
            self.exchanges.append(exchange)
            if accepted is not None:
                self.accepted.append(accepted)

    def _accept(
        self, path: str, body: bytes, status: int, fault: str | None
    ) -> AcceptedMessage | None:
        """The message a create makes Twilio send (None if Twilio would not have it)."""
        if not _is_create("POST", path) or status != 201 or fault not in ACCEPTED_FAULTS:
            return None
        return accepted_from_form(body, sid=new_message_sid(), created=self.clock())

    def _answer(
        self, method: str, path: str, payload: bytes, accepted: AcceptedMessage | None
    ) -> bytes:
        """Prism's successful answer, made consistent with the remembered messages."""
        try:
            document = json.loads(payload)
        except ValueError:
            return payload
        if not isinstance(document, dict):
            return payload
        if accepted is not None:
            # Just created: queued, not sent yet.
            created = {**message_json(document, accepted), "status": "queued", "date_sent": None}
            return json.dumps(created).encode()
        if _is_list(method, path):
            with self._lock:
                remembered = list(self.accepted)
            query = path.split("?", 1)[1] if "?" in path else ""
            return json.dumps(messages_page(document, remembered, query)).encode()
        return payload

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        connection = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK hold the body back ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `exchanges` instead."""

            def _proxy(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                keep = ("Authorization", "Content-Type", "Accept", "User-Agent")
                headers = {k: v for k, v in self.headers.items() if k in keep}
                status, content_type, payload = proxy._forward(
                    self.command, self.path, headers, body
                )
                ok = 200 <= status < 300
                fault = proxy._next_fault(self.command, self.path) if ok else None
                accepted = proxy._accept(self.path, body, status, fault) if ok else None
                if fault in (HANG, LOST_REPLY, RESET):
                    exchange = Exchange(self.command, self.path, status, fault, None, body.decode())
                    proxy._record(exchange, accepted)
                    if fault == RESET:
                        self._reset()
                        return
                    time.sleep(proxy.hang_seconds)
                    self.close_connection = True
                    return
                answer = status
                if fault is not None and fault in EDGE_ERRORS:
                    answer, content_type, payload = EDGE_ERRORS[fault]
                elif fault is not None:
                    answer, error = TWILIO_ERRORS[fault]
                    content_type, payload = "application/json", json.dumps(error).encode()
                elif ok:
                    payload = proxy._answer(self.command, self.path, payload, accepted)
                proxy._record(
                    Exchange(self.command, self.path, status, fault, answer, body.decode()),
                    accepted,
                )
                self.send_response(answer)
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _reset(self) -> None:
                """Closes the connection with a TCP reset (SO_LINGER 0), answering nothing."""
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()  # socketserver's own close later is a no-op
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _proxy

        return Handler

    def start(self) -> Self:
        """Starts serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
