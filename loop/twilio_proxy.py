"""The state Twilio keeps and Prism lacks: a proxy in front of Prism that remembers messages.

Prism answers every valid request with the spec's example, the same SID every time, and
lists no message afterwards. `TwilioProxy` forwards each request to Prism first (so it is
still validated against Twilio's contract; a 4xx from Prism is passed through, never
masked), records it, and keeps every message Twilio would have accepted, with a unique SID
and the proxy's clock as its creation date. A Messages list request then answers with those
messages (To/From filters, PageSize, newest first) in Prism's example page, so a client can
ask "did my earlier request go through?" as it would ask Twilio.

Tests subclass it to inject Twilio's failures (`fault_for`); the demo uses it as is.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, urlsplit

from loop.service import Service

DEFAULT_PAGE_SIZE = 50  # Twilio's, when a list request gives no PageSize
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept", "User-Agent")


class Fault(Protocol):
    """A failure that replaces Prism's successful answer (see tests/doubles/twilio_faults.py)."""

    @property
    def name(self) -> str:
        """As recorded in `Exchange.fault`."""

    @property
    def client_status(self) -> int | None:
        """The status the client gets (None: no answer at all)."""

    @property
    def twilio_has_message(self) -> bool:
        """A Messages create Prism accepted is still sent by Twilio despite the failure."""

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Answers (or fails to answer) the client on `handler`'s connection."""


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
    accepted_message: bool = False
    """Twilio would have queued an SMS: a valid Messages create Twilio did not refuse."""


@dataclass(frozen=True)
class MessageRequest:
    """A Messages create the mock Twilio answered."""

    status: int | None
    """What the client got back (None: no answer, a hang or a lost reply)."""
    fault: str | None
    form: dict[str, list[str]]
    accepted: bool
    """Twilio would have sent this message."""


@dataclass(frozen=True)
class AcceptedMessage:
    """A message the mock Twilio accepted, as its Messages list shows it later."""

    sid: str
    to: str
    from_: str
    body: str
    num_media: int
    date_created: datetime


def is_messages_create(method: str, path: str) -> bool:
    """A Messages create request (POST .../Messages.json)."""
    return method == "POST" and path.split("?", 1)[0].endswith("/Messages.json")


def is_messages_list(method: str, path: str) -> bool:
    """A Messages list request (GET .../Messages.json)."""
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


class TwilioProxy(Service):
    """An HTTP proxy on loopback in front of Prism that keeps Twilio's messages.

    Every create Twilio would have accepted is remembered (`accepted`), every request is
    recorded (`exchanges`); `forget()` starts a new scenario.
    """

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.upstream = urlsplit(upstream)
        self.clock = clock
        """Twilio's clock: the creation date of accepted messages."""
        self.exchanges: list[Exchange] = []
        self.accepted: list[AcceptedMessage] = []
        """Messages Twilio would have accepted since the last forget(), oldest first."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to point a LoopbackHttpClient at."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def forget(self) -> None:
        """Forgets the exchanges and accepted messages seen so far (a new scenario)."""
        with self._lock:
            self.exchanges.clear()
            self.accepted.clear()

    def message_requests(self) -> list[MessageRequest]:
        """Every Messages create the mock Twilio answered, in order."""
        with self._lock:
            exchanges = list(self.exchanges)
        return [
            MessageRequest(
                e.client_status,
                e.fault,
                parse_qs(e.body, keep_blank_values=True),
                e.accepted_message,
            )
            for e in exchanges
            if is_messages_create(e.method, e.path)
        ]

    def sent_messages(self) -> list[dict[str, str]]:
        """The messages Twilio accepted (would send): To, From, Body, MediaUrl."""
        return [
            {key.removesuffix("[]"): values[0] for key, values in request.form.items()}
            for request in self.message_requests()
            if request.accepted
        ]

    def fault_for(self, method: str, path: str) -> Fault | None:
        """The failure that replaces Prism's successful answer to this request: none here."""
        return None

    def _record(self, exchange: Exchange, accepted: AcceptedMessage | None) -> None:
        with self._lock:
            self.exchanges.append(exchange)
            if accepted is not None:
                self.accepted.append(accepted)

    def _accept(
        self, method: str, path: str, body: bytes, status: int, fault: Fault | None
    ) -> AcceptedMessage | None:
        """The message a create makes Twilio send (None if Twilio would not have it)."""
        if not is_messages_create(method, path) or status != 201:
            return None
        if fault is not None and not fault.twilio_has_message:
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
        if is_messages_list(method, path):
            with self._lock:
                remembered = list(self.accepted)
            query = path.split("?", 1)[1] if "?" in path else ""
            return json.dumps(messages_page(document, remembered, query)).encode()
        return payload

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        """Forwards one request to Prism, records it, answers the client."""
        method, path = request.command, request.path
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
        status, content_type, payload = self._forward(method, path, headers, body)
        ok = 200 <= status < 300
        fault = self.fault_for(method, path) if ok else None
        accepted = self._accept(method, path, body, status, fault)
        client_status = status if fault is None else fault.client_status
        exchange = Exchange(
            method,
            path,
            status,
            fault.name if fault else None,
            client_status,
            body.decode(),
            accepted_message=accepted is not None,
        )
        self._record(exchange, accepted)
        if fault is not None:
            fault.respond(request)
            return
        if ok:
            payload = self._answer(method, path, payload, accepted)
        send_answer(request, status, content_type or "application/json", payload)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK hold the body back ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: callers read `exchanges` instead."""

            def _proxy(self) -> None:
                proxy._handle(self)

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


def send_answer(
    request: BaseHTTPRequestHandler, status: int, content_type: str, payload: bytes
) -> None:
    """Writes a complete HTTP answer on `request`'s connection."""
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    request.wfile.write(payload)
