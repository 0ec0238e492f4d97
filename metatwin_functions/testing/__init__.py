"""Test helpers for applications built on metatwin-functions.

`FunctionTestClient` calls your functions as the platform does, through the same call pipeline
as a deployed server; the pytest plugin (installed with the package) gives the ``function_client``
fixture.
"""

from __future__ import annotations

from .client import FunctionTestClient
from .responses import CallFailedError, CallResponse, ReadyResponse

__all__ = ["CallFailedError", "CallResponse", "FunctionTestClient", "ReadyResponse"]
