"""Twilio's failures, injected by a proxy in front of Prism (test scaffolding).

`FaultProxy` is the loop's `TwilioProxy` (Prism plus the messages Twilio keeps) that can
replace Prism's successful answers with Twilio's failures, so the send Lambda's retries and
reconciliation can be tested against Twilio's contract over a flaky network.

Every request is still forwarded to Prism first (a 4xx from Prism is passed through, never
masked); then, for requests whose path ends with one of `paths`, the next planned fault
replaces Prism's answer: `plan(lookups=...)` plans those of Messages list requests
(GET .../Messages.json), `plan(*faults)` those of every other matching request (Messages
creates by default). A fault is named by a key of TWILIO_ERRORS, HANG, LOST_REPLY, RESET,
BAD_GATEWAY_AFTER_ACCEPT, or None (Prism's answer as is).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

from loop.twilio_proxy import Fault, TwilioProxy, is_messages_list, send_answer

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
BAD_GATEWAY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


@dataclass(frozen=True)
class ErrorAnswer:
    """An error answer instead of Prism's: Twilio's JSON error, or its edge's HTML page."""

    name: str
    client_status: int
    content_type: str
    body: bytes
    twilio_has_message: bool = False

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Sends the error."""
        send_answer(handler, self.client_status, self.content_type, self.body)


@dataclass(frozen=True)
class NoAnswer:
    """No answer within the client's timeout: the connection stays silent, then closes."""

    name: str
    seconds: float
    twilio_has_message: bool
    client_status: None = None

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Waits `seconds`, then closes without answering."""
        time.sleep(self.seconds)
        handler.close_connection = True


@dataclass(frozen=True)
class ConnectionReset:
    """The connection is reset before any answer (the client fails at once)."""

    name: str = RESET
    twilio_has_message: bool = True
    client_status: None = None

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Closes the connection with a TCP reset (SO_LINGER 0), answering nothing."""
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()  # socketserver's own close later is a no-op
        handler.close_connection = True


def fault_catalogue(hang_seconds: float) -> dict[str, Fault]:
    """Every fault a plan may name, by name."""
    faults: dict[str, Fault] = {
        name: ErrorAnswer(name, status, "application/json", json.dumps(error).encode())
        for name, (status, error) in TWILIO_ERRORS.items()
    }
    faults[BAD_GATEWAY_AFTER_ACCEPT] = ErrorAnswer(
        BAD_GATEWAY_AFTER_ACCEPT, 502, "text/html", BAD_GATEWAY_PAGE, twilio_has_message=True
    )
    faults[HANG] = NoAnswer(HANG, hang_seconds, twilio_has_message=False)
    faults[LOST_REPLY] = NoAnswer(LOST_REPLY, hang_seconds, twilio_has_message=True)
    faults[RESET] = ConnectionReset()
    return faults


class FaultProxy(TwilioProxy):
    """A `TwilioProxy` that replaces Prism's answers with the faults planned (see above)."""

    def __init__(
        self,
        upstream: str,
        *,
        paths: tuple[str, ...] = ("/Messages.json",),
        hang_seconds: float = 2.0,
        host: str = "127.0.0.1",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(upstream, host=host, clock=clock)
        self.paths = paths
        self.faults = fault_catalogue(hang_seconds)
        self._plan: list[str | None] = []
        self._lookups: list[str | None] = []
        self._plan_lock = threading.Lock()

    def plan(self, *faults: str | None, lookups: tuple[str | None, ...] = ()) -> None:
        """Faults for the next matching requests (`faults`) and Messages list requests
        (`lookups`), in order; then Prism's answers as is. Starts a new scenario: the
        exchanges and accepted messages seen so far are forgotten."""
        unknown = [f for f in (*faults, *lookups) if f is not None and f not in self.faults]
        if unknown:
            raise ValueError(f"unknown faults {unknown}: choose from {sorted(self.faults)}")
        with self._plan_lock:
            self._plan = list(faults)
            self._lookups = list(lookups)
        self.forget()

    def messages_accepted(self) -> int:
        """How many SMS Twilio would have sent so far in this scenario."""
        return sum(1 for request in self.message_requests() if request.accepted)

    def fault_for(self, method: str, path: str) -> Fault | None:
        """The next planned fault for this request, if its path is one of `paths`."""
        with self._plan_lock:
            if not path.split("?", 1)[0].endswith(self.paths):
                return None
            queue = self._lookups if is_messages_list(method, path) else self._plan
            name = queue.pop(0) if queue else None
        return None if name is None else self.faults[name]
