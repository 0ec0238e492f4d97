"""Test helpers for applications built on metatwin-functions.

`InMemoryBroker` stands in for RabbitMQ: ``EventsService(settings, registry,
broker=InMemoryBroker())`` publishes to it, and a test awaits what it recorded.
"""

from __future__ import annotations

from .broker import InMemoryBroker, PublishedEvent

__all__ = ["InMemoryBroker", "PublishedEvent"]
