"""Stateful fakes of third-party HTTP APIs, usable with `responses` or on a loopback server."""

from .http import FakeRequest, FakeResponse, FaultPlan, install, serve
from .keycloak import FakeKeycloak
from .microsoft import FakeMicrosoft

__all__ = [
    "FakeKeycloak",
    "FakeMicrosoft",
    "FakeRequest",
    "FakeResponse",
    "FaultPlan",
    "install",
    "serve",
]
