"""Worker setup for the send Lambda in the local loop: its Twilio client talks to the mock.

Production code is unchanged: the handler's runtime is rebuilt from the same environment,
only with a transport that sends Twilio's requests to `LOCAL_TWILIO_URL` (Prism behind the
fault proxy) instead of api.twilio.com.
"""

from __future__ import annotations

import os
from types import ModuleType

from loop.twilio_loopback import LoopbackHttpClient


def install(handler_module: ModuleType) -> None:
    """Called by `loop.lambda_worker` with the send Lambda's `handler` module."""
    from lambda_shared import twilio_rest  # the Lambdas' shared package, on the worker's path

    base_url = os.environ["LOCAL_TWILIO_URL"]
    twilio_rest.use_transport(lambda timeout: LoopbackHttpClient(base_url, timeout=timeout))
    handler_module.runtime.cache_clear()
