"""Medians over repeats, the table, the targets and the JSON file."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RowResult", "TargetResult", "evaluate_targets", "format_table", "write_json"]

MIB = 1024 * 1024
#: Metrics whose median over repeats is reported; failures and errors use the worst repeat.
MEDIAN_METRICS = (
    "calls_per_s",
    "p50_ms",
    "p99_ms",
    "cpu_us_per_call",
    "def_calls_per_s",
    "def_cpu_us_per_call",
    "idle_rss_mib",
    "peak_rss_mib",
    "burst_wall_s",
    "burst_cpu_us_per_call",
    "cpu0_others_pct",
    "cpu0_steal_pct",
)
WORST_METRICS = ("burst_failed", "load_errors")


@dataclass(slots=True)
class RowResult:
    """Everything measured for one row over all repeats."""

    name: str
    about: str
    argv: list[str]
    samples: list[dict[str, Any]] = field(default_factory=list)
    startup_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    def median(self) -> dict[str, float]:
        """Median of each metric over the repeats that completed."""
        out: dict[str, float] = {}
        if self.startup_ms:
            out["startup_ms"] = statistics.median(self.startup_ms)
        if not self.samples:
            return out
        for key in MEDIAN_METRICS:
            out[key] = statistics.median(s[key] for s in self.samples)
        for key in WORST_METRICS:
            out[key] = max(s[key] for s in self.samples)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "about": self.about,
            "argv": self.argv,
            "skipped": self.skipped,
            "errors": self.errors,
            "median": self.median(),
            "startup_ms": self.startup_ms,
            "samples": self.samples,
        }


COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, metric, format)
    ("calls/s", "calls_per_s", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("CPU us/call", "cpu_us_per_call", "{:.0f}"),
    ("(min-max)", "cpu_us_per_call_range", "{}"),
    ("def calls/s", "def_calls_per_s", "{:.0f}"),
    ("start-up ms", "startup_ms", "{:.0f}"),
    ("idle MiB", "idle_rss_mib", "{:.1f}"),
    ("peak MiB", "peak_rss_mib", "{:.1f}"),
    ("{burst}x1s s", "burst_wall_s", "{:.2f}"),
    ("failed", "burst_failed", "{:.0f}"),
    ("load errs", "load_errors", "{:.0f}"),
    ("CPU0 others %", "cpu0_others_pct", "{:.0f}"),
)


def format_table(results: list[RowResult], burst_calls: int) -> str:
    """One row per server set-up, one column per metric (medians over repeats)."""
    header = ["row", *(c[0].format(burst=burst_calls) for c in COLUMNS)]
    lines: list[list[str]] = []
    for result in results:
        if result.skipped:
            lines.append([result.name, f"skipped: {result.skipped}"])
            continue
        median = result.median()
        cpu = [s["cpu_us_per_call"] for s in result.samples]
        spread = {"cpu_us_per_call_range": f"{min(cpu):.0f}-{max(cpu):.0f}"} if cpu else {}
        cells = [result.name]
        for _, metric, fmt in COLUMNS:
            if metric in spread:
                cells.append(spread[metric])
                continue
            cells.append(fmt.format(median[metric]) if metric in median else "-")
        lines.append(cells)
    widths = [len(h) for h in header]
    for cells in lines:
        if len(cells) == len(header):
            widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    out = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    out.append("  ".join("-" * w for w in widths))
    for cells in lines:
        if len(cells) != len(header):
            out.append(f"{cells[0].ljust(widths[0])}  {cells[1]}")
            continue
        out.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class TargetResult:
    """One target of the issue: the measured value, the limit, and whether it holds."""

    name: str
    value: str
    limit: str
    passed: bool | None  # None: not measured in this run, or informational only

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[self.passed]
        return f"[{verdict}] {self.name}: {self.value} (target {self.limit})"


def _paired_ratios(results: dict[str, RowResult], row: str, peer: str) -> list[float]:
    """CPU/call ratios of two rows repeat by repeat: measured minutes apart, so drift cancels."""
    if row not in results or peer not in results:
        return []
    by_repeat = {s["repeat"]: s["cpu_us_per_call"] for s in results[peer].samples}
    return [
        s["cpu_us_per_call"] / by_repeat[s["repeat"]]
        for s in results[row].samples
        if by_repeat.get(s["repeat"])
    ]


def _ratio_target(
    results: dict[str, RowResult], row: str, peer: str, limit: float | None
) -> TargetResult:
    limit_text = f"<= {limit:g} x {peer}" if limit is not None else "informational"
    name = f"{row} CPU/call vs {peer}"
    a = results[row].median().get("cpu_us_per_call") if row in results else None
    b = results[peer].median().get("cpu_us_per_call") if peer in results else None
    if a is None or b is None or b <= 0:
        return TargetResult(name, "not measured", limit_text, None)
    ratio = a / b
    paired = ", ".join(f"{r:.2f}" for r in _paired_ratios(results, row, peer))
    value = f"{ratio:.2f} x ({a:.0f} vs {b:.0f} us; per repeat {paired})"
    return TargetResult(name, value, limit_text, None if limit is None else ratio <= limit)


def evaluate_targets(results: list[RowResult], burst_calls: int = 1000) -> list[TargetResult]:
    """The issue's targets, in its order, plus the events on/off ratio for information."""
    measured = {r.name: r for r in results if not r.skipped}
    medians = {name: r.median() for name, r in measured.items()}
    targets = [
        _ratio_target(measured, "sdk-info", "fastapi-peer", 0.8),
        _ratio_target(measured, "sdk-warning", "quart-bare", 1.0),
    ]
    for row in ("sdk-info", "sdk-warning"):
        median = medians.get(row, {})
        startup = median.get("startup_ms")
        targets.append(
            TargetResult(
                f"{row} start-up to first 200 on /ready",
                "not measured" if startup is None else f"{startup:.0f} ms",
                "<= 300 ms",
                None if startup is None else startup <= 300,
            )
        )
        idle = median.get("idle_rss_mib")
        targets.append(
            TargetResult(
                f"{row} idle RSS",
                "not measured" if idle is None else f"{idle:.1f} MiB",
                "<= 40 MiB",
                None if idle is None else idle <= 40,
            )
        )
        wall, failed = median.get("burst_wall_s"), median.get("burst_failed")
        passed = None
        if wall is not None and burst_calls == 1000:  # the target is for 1,000 calls
            passed = wall <= 1.4 and failed == 0
        targets.append(
            TargetResult(
                f"{row} {burst_calls:,} concurrent 1 s calls",
                "not measured" if wall is None else f"{wall:.2f} s, {failed:.0f} failed",
                "1,000 calls <= 1.4 s, none failed",
                passed,
            )
        )
    if "sdk-events" in medians:
        targets.append(_ratio_target(measured, "sdk-events", "sdk-info", None))
    targets += _uvicorn_targets(measured, medians)
    return targets


def _uvicorn_targets(
    measured: dict[str, RowResult], medians: dict[str, dict[str, float]]
) -> list[TargetResult]:
    """The uvicorn runner: CPU per call against the first SDK, start-up against Hypercorn's."""
    if not {"sdk-uvicorn-info", "sdk-uvicorn-warning"} & medians.keys():
        return []
    targets = [
        _ratio_target(measured, "sdk-uvicorn-warning", "fastapi-peer", 0.25),
        _ratio_target(measured, "sdk-uvicorn-info", "fastapi-peer", 0.35),
    ]
    for row, peer in (("sdk-uvicorn-info", "sdk-info"), ("sdk-uvicorn-warning", "sdk-warning")):
        mine = medians.get(row, {}).get("startup_ms")
        theirs = medians.get(peer, {}).get("startup_ms")
        name = f"{row} start-up vs {peer}"
        if mine is None or theirs is None:
            targets.append(TargetResult(name, "not measured", "<= +40 ms", None))
            continue
        value = f"{mine - theirs:+.0f} ms ({mine:.0f} vs {theirs:.0f} ms)"
        targets.append(TargetResult(name, value, "<= +40 ms", mine - theirs <= 40))
    return targets


def write_json(
    path: Path, meta: dict[str, Any], results: list[RowResult], targets: list[TargetResult]
) -> None:
    """Everything, raw samples included, as one JSON document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **meta,
        "rows": {r.name: r.as_json() for r in results},
        "targets": [
            {"name": t.name, "value": t.value, "limit": t.limit, "passed": t.passed}
            for t in targets
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
