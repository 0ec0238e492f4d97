"""Test helpers for applications built on metatwin-functions.

`FunctionTestClient` calls your functions as the platform does, through the same call pipeline
as a deployed server, and records the RabbitMQ events the server publishes; the pytest plugin
(installed with the package) gives the ``function_client`` fixture. `InMemoryBroker` stands in
for RabbitMQ: ``EventsService(settings, registry, broker=InMemoryBroker())`` publishes to it, and
a test awaits what it recorded.
"""

from __future__ import annotations

from .broker import InMemoryBroker, PublishedEvent
from .client import FunctionTestClient
from .responses import CallFailedError, CallResponse, ReadyResponse

__all__ = [
    "CallFailedError",
    "CallResponse",
    "FunctionTestClient",
    "InMemoryBroker",
    "PublishedEvent",
    "ReadyResponse",
]
