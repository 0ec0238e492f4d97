"""Start-up time (spawn to the first ``/ready`` 200) and idle RSS of the SDK beside quart-bare.

Run: ``python benchmarks/startup.py [--spawns 5] [--compare DIR]`` from the repository root. The
rows are spawned in turn, ``--spawns`` times each, on free ports; the medians are printed.
``--compare DIR`` adds the SDK of another checkout (e.g. ``git archive`` of an older commit).
A quick check, not the full bench.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = {
    "sdk": [sys.executable, "-m", "metatwin_functions", "serve", "examples.simple_function"],
    "quart-bare": [sys.executable, "benchmarks/peers/quart_bare.py"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=0.5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    # utime and stime: CPU spent, which a busy neighbour does not inflate as it does wall time.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn_once(command: list[str], root: Path = ROOT) -> tuple[float, int, float]:
    """Seconds from spawn to the first ``/ready`` 200, RSS (KiB) a second later, CPU seconds."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
    env |= {
        "CRBR_FUNCTIONS_HOST": "127.0.0.1",
        "CRBR_FUNCTIONS_PORT": str(port),
        "CRBR_DEPLOYMENT_ID": "bench",
        "PYTHONPATH": str(root) + os.pathsep + str(ROOT / "benchmarks" / "peers"),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = started + 30
        while not _ready(port):
            if time.perf_counter() > deadline or process.poll() is not None:
                raise RuntimeError(f"{command} did not get ready")
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(process.pid)
        time.sleep(1.0)
        return elapsed, _rss_kib(process.pid), cpu
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    """Measure every row and print the medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout whose SDK to measure too")
    args = parser.parse_args()
    rows = [(name, command, ROOT) for name, command in ROWS.items()]
    if args.compare is not None:
        rows.append((f"sdk@{args.compare.name}", ROWS["sdk"], args.compare.resolve()))
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name, _, _ in rows}
    for _ in range(args.spawns):
        # In turn, so that a noisy neighbour slows every row alike.
        for name, command, root in rows:
            results[name].append(spawn_once(command, root))
    for name, samples in results.items():
        start_ms = statistics.median(s[0] for s in samples) * 1000
        fastest_ms = min(s[0] for s in samples) * 1000
        rss_mib = statistics.median(s[1] for s in samples) / 1024
        cpu_ms = statistics.median(s[2] for s in samples) * 1000
        print(
            f"{name:12} start median {start_ms:6.1f} ms (fastest {fastest_ms:6.1f}),"
            f" CPU to ready {cpu_ms:5.0f} ms, idle RSS {rss_mib:6.2f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
