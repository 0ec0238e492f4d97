"""Benchmark the SDK against its peers, side by side (``nox -s bench``).

Rows are interleaved and repeated (for each repeat, every row once, in a rotated order) so drift on
a shared machine spreads over all rows; the table shows medians over repeats. See README.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import load
from checks import ADD_BODY, BURST_BODY, WORD_BODY, CheckError, check_server, warm_up
from load import LoadError, burst, run_wrk, wrk_path
from measure import PeakRssPoller, cpu_load, cpu_seconds, rss_bytes
from otlp_stub import OtlpStub
from report import MIB, RowResult, evaluate_targets, format_table, write_json
from rows import OTLP_STUB_PORT, REPO, ROWS, Row, base_env, baseline_rows, unavailable
from server import SERVER_CPU, ServerError, ServerProcess, free_port, stop_all

RESULTS = REPO / "benchmarks" / "results"
HARNESS_CPU = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=8.0,
        help="seconds of the /exec load per row and repeat (default 8)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats per row (default 3)")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"comma-separated rows (default: all of {','.join(ROWS)})",
    )
    parser.add_argument(
        "--spawns",
        type=int,
        default=5,
        help="at least this many start-up samples per row (default 5)",
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--burst", type=int, default=1000, help="concurrent 1 s calls in the burst (default 1000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 s loads, 1 repeat, 3 spawns"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the JSON (default benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also measure the SDK rows at this git commit (a before/after table in one run)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target fails (not only when a row fails)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.spawns = 2.0, 1, 3
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    args.row_names = names
    if args.duration < 1 or args.repeats < 1 or args.spawns < 1 or not 1 <= args.burst <= 5000:
        parser.error("--duration, --repeats, --spawns >= 1; --burst between 1 and 5000")
    return args


def _prepare_machine(burst_calls: int) -> bool:
    """Raise the file limit for the burst; pin the harness (and so wrk) off the server's CPU."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = burst_calls * 2 + 1024
    if soft < want:
        raised_hard = hard if hard == resource.RLIM_INFINITY or hard >= want else want
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, raised_hard))
        except (ValueError, OSError):  # not root: go as high as allowed
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (os.cpu_count() or 1) < 2:
        print("warning: one CPU only: server, harness and wrk share it", file=sys.stderr)
        return False
    os.sched_setaffinity(0, {HARNESS_CPU})
    return True


def _spawn(row: Row, name: str) -> ServerProcess:
    port = free_port()
    env = {**base_env(port), **row.env}
    log = RESULTS / "logs" / f"{name}.log"
    return ServerProcess(list(row.argv), env, row.cwd or REPO, log, port)


def _loads(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """The measured part of a repeat, on a started and checked server."""
    warm_up(port)
    time.sleep(0.3)
    idle = rss_bytes(pid)
    with PeakRssPoller(pid) as peak:
        run_wrk(port, ADD_BODY, 1, args.connections)  # warm-up under load, not counted
        cpu_before, (busy_before, steal_before) = cpu_seconds(pid), cpu_load(SERVER_CPU)
        add = run_wrk(port, ADD_BODY, args.duration, args.connections)
        cpu_add = cpu_seconds(pid) - cpu_before
        busy_after, steal_after = cpu_load(SERVER_CPU)
        cpu_before = cpu_seconds(pid)
        word = run_wrk(port, WORD_BODY, max(1.0, args.duration / 2), args.connections)
        cpu_word = cpu_seconds(pid) - cpu_before
        time.sleep(0.2)
        cpu_before = cpu_seconds(pid)
        slow = burst(port, args.burst, BURST_BODY, timeout=30.0)
        cpu_burst = cpu_seconds(pid) - cpu_before
    window = max(add.duration_s, 1e-9)
    return {
        "calls_per_s": add.rps,
        "p50_ms": add.p50_ms,
        "p99_ms": add.p99_ms,
        "cpu_us_per_call": cpu_add / max(1, add.requests) * 1e6,
        "def_calls_per_s": word.rps,
        "def_cpu_us_per_call": cpu_word / max(1, word.requests) * 1e6,
        "idle_rss_mib": idle / MIB,
        "peak_rss_mib": peak.peak / MIB,
        "burst_wall_s": slow.wall_s,
        "burst_failed": slow.failed,
        "burst_first_error": slow.first_error,
        "burst_cpu_us_per_call": cpu_burst / args.burst * 1e6,
        "load_errors": add.errors + word.errors,
        # What else ran on the server's CPU during the /exec load: this sample's noise.
        "cpu0_others_pct": max(0.0, busy_after - busy_before - cpu_add) / window * 100,
        "cpu0_steal_pct": (steal_after - steal_before) / window * 100,
        "calls": add.requests,
        "cpu_s": cpu_add,
    }


def measure_row(row: Row, args: argparse.Namespace, startup_ms: list[float]) -> dict[str, Any]:
    """One repeat of one row: start-up spawns, checks, idle RSS, loads, burst, checks again."""
    load.EXTRA_HEADERS = dict(row.headers)
    per_repeat = max(1, math.ceil(args.spawns / args.repeats))
    for _ in range(per_repeat - 1):
        with _spawn(row, row.name) as extra:
            startup_ms.append(extra.start() * 1000)
    with _spawn(row, row.name) as server:
        startup_ms.append(server.start() * 1000)
        try:
            check_server(server.port)
            sample = _loads(server.port, server.pid, args)
            check_server(server.port)  # still answering correctly after the load
        except (CheckError, LoadError, OSError) as exc:
            raise ServerError(f"{type(exc).__name__}: {exc} [{server.describe()}]") from exc
    return sample


def _checkout(ref: str) -> Path:
    """A detached worktree of ``ref`` under benchmarks/results/baseline (made once per ref)."""
    target = RESULTS / "baseline" / ref.replace("/", "_")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(target), ref],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return target


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if wrk_path() is None:
        print(
            "wrk is not installed: it is the load generator of this benchmark.\n"
            "  Debian/Ubuntu: apt-get install wrk    macOS: brew install wrk\n"
            "  or build it from https://github.com/wg/wrk",
            file=sys.stderr,
        )
        return 2
    pinned = _prepare_machine(args.burst)
    signal.signal(signal.SIGTERM, _on_sigterm)
    rows = [ROWS[name] for name in args.row_names]
    if args.baseline:
        rows += baseline_rows(args.baseline, _checkout(args.baseline))
    results = {row.name: RowResult(row.name, row.about, list(row.argv)) for row in rows}
    runnable = []
    for row in rows:
        reason = unavailable(row)
        if reason:
            results[row.name].skipped = reason
            print(f"skipping {row.name}: {reason}", file=sys.stderr)
        else:
            runnable.append(row)
    if (REPO / ".env").exists():
        print("warning: .env in the repository root is read by the SDK rows", file=sys.stderr)
    started = time.monotonic()
    stub = OtlpStub(OTLP_STUB_PORT)
    stub.start()
    try:
        for repeat in range(args.repeats):
            shift = repeat % max(1, len(runnable))
            for row in runnable[shift:] + runnable[:shift]:
                elapsed = time.monotonic() - started
                print(
                    f"[{repeat + 1}/{args.repeats}] {row.name} ({elapsed:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                result = results[row.name]
                try:
                    sample = measure_row(row, args, result.startup_ms)
                    result.samples.append({"repeat": repeat + 1, **sample})
                except (ServerError, CheckError, LoadError, OSError) as exc:
                    message = f"repeat {repeat + 1}: {type(exc).__name__}: {exc}"
                    result.errors.append(message)
                    print(f"  {row.name} failed: {message}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, nothing written", file=sys.stderr)
        return 130
    finally:
        stop_all()
        stub.stop()
    ordered = [results[row.name] for row in rows]
    targets = evaluate_targets(ordered, args.burst)
    print()
    print(format_table(ordered, args.burst))
    print()
    for target in targets:
        print(target.line())
    meta = _meta(args, pinned, time.monotonic() - started)
    write_json(args.output, meta, ordered, targets)
    print(f"\nJSON: {args.output}   server logs: {RESULTS / 'logs'}")
    if any(r.errors for r in ordered):
        return 1
    if args.strict and any(t.passed is False for t in targets):
        return 1
    return 0


def _meta(args: argparse.Namespace, pinned: bool, elapsed: float) -> dict[str, object]:
    wrk = wrk_path()
    version = ""
    if wrk:
        done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        version = (
            (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else ""
        )
    return {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "pinned": {"server_cpu": SERVER_CPU, "harness_and_wrk_cpu": HARNESS_CPU}
            if pinned
            else None,
            "wrk": version,
        },
        "settings": {
            "duration_s": args.duration,
            "repeats": args.repeats,
            "spawns": args.spawns,
            "connections": args.connections,
            "burst_calls": args.burst,
            "rows": args.row_names,
        },
    }


if __name__ == "__main__":
    sys.exit(main())
