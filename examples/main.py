"""Serve the example functions: ``python examples/main.py`` (listens on CRBR_FUNCTIONS_PORT)."""

from __future__ import annotations

import os
import sys

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import examples.simple_function  # noqa: F401 - registers the example functions
from metatwin_functions import FunctionServer

if __name__ == "__main__":
    server = FunctionServer()
    server.start()
