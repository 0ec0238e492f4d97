"""Rate-limit strings: ``"100/s"``, ``"20/m"``, ``"5/h"``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Rate", "parse_rate"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``tokens`` calls per ``per_seconds``: a bucket of that many tokens, refilled as fast."""

    tokens: int
    per_seconds: float

    @property
    def per_second(self) -> float:
        """Refill speed, tokens per second."""
        return self.tokens / self.per_seconds


def parse_rate(text: str) -> Rate:
    """Parse ``"N/unit"`` (unit ``s``, ``m`` or ``h``); `ValueError` says what is wrong."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(
            f'rate limit {text!r} is not of the form "N/s", "N/m" or "N/h" (e.g. "100/s")'
        )
    tokens = int(match.group(1))
    if tokens < 1:
        raise ValueError(f"rate limit {text!r} must allow at least one call")
    return Rate(tokens, _UNITS[match.group(2)])
