"""Fixtures of the send tests: Prism (Twilio's contract) behind a fault proxy, moto AWS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loop.prism_server import PrismServer
from tests.doubles.twilio_faults import FaultProxy
from tests.send.scenarios import CLIENT_TIMEOUT, AwsStandIns, aws_stand_ins


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismServer]:
    """One Prism for the session (it takes ~2 s to start)."""
    with PrismServer() as server:
        yield server


@pytest.fixture(scope="session")
def proxy(prism: PrismServer) -> Iterator[FaultProxy]:
    """The fault-injecting proxy in front of Prism; each test plans its own faults."""
    with FaultProxy(prism.url, hang_seconds=CLIENT_TIMEOUT * 3) as server:
        yield server


@pytest.fixture
def fresh_proxy(proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The proxy with no fault planned and no exchange recorded; checks afterwards that
    Prism found every request valid (a 4xx from Prism means we broke Twilio's contract)."""
    proxy.plan()
    yield proxy
    invalid = [e for e in proxy.exchanges if e.prism_status >= 400]
    assert not invalid, f"Prism rejected requests: {invalid}"


@pytest.fixture
def aws(aws_env: None) -> Iterator[AwsStandIns]:
    """Fresh moto resources per test."""
    with aws_stand_ins() as stand_ins:
        yield stand_ins
