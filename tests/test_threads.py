"""The daemon thread pool behind plain ``def`` functions."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError

import pytest

from metatwin_functions.threads import DaemonThreadPool


def test_results_and_exceptions_reach_the_caller() -> None:
    pool = DaemonThreadPool(2)
    assert pool.submit(lambda x: x * 2, 21).result(timeout=5) == 42

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.submit(interrupted).result(timeout=5)
    pool.shutdown()


def test_at_most_max_workers_threads_run_at_once() -> None:
    pool = DaemonThreadPool(3, thread_name_prefix="bounded")
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    futures = [pool.submit(work) for _ in range(12)]
    for future in futures:
        future.result(timeout=5)
    assert peak == 3
    assert pool.busy == 0
    assert len([t for t in threading.enumerate() if t.name.startswith("bounded")]) == 3
    pool.shutdown()


def test_idle_threads_are_reused() -> None:
    pool = DaemonThreadPool(8, thread_name_prefix="reuse")
    for _ in range(20):
        pool.submit(time.sleep, 0).result(timeout=5)
    assert len([t for t in threading.enumerate() if t.name.startswith("reuse")]) == 1
    pool.shutdown()


def test_shutdown_cancels_what_has_not_started() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()
    first = pool.submit(release.wait, 5)
    queued = pool.submit(lambda: "never")
    assert pool.busy == 2
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert first.result(timeout=5) is True
    with pytest.raises(CancelledError):
        queued.result(timeout=5)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_stuck_call_does_not_keep_the_process_alive() -> None:
    script = (
        "import time\n"
        "from metatwin_functions.threads import DaemonThreadPool\n"
        "pool = DaemonThreadPool(1)\n"
        "pool.submit(time.sleep, 60)\n"
        "pool.shutdown(wait=False)\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert time.perf_counter() - started < 10
