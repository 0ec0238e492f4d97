"""CPU time and resident memory of a whole process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

__all__ = [
    "CLOCK_TICKS",
    "PeakRssPoller",
    "cpu_load",
    "cpu_seconds",
    "rss_bytes",
    "tree_pids",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _children(pid: int) -> list[int]:
    """Direct children of a process (every thread's ``children`` file, else a /proc scan)."""
    kids: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
        for task in tasks:
            kids.extend(int(x) for x in (task / "children").read_text().split())
        return kids
    except FileNotFoundError:
        pass
    except OSError:
        return []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def tree_pids(root: int) -> list[int]:
    """The root and all its descendants that are alive now."""
    seen: list[int] = []
    todo = [root]
    while todo and len(seen) < 10_000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may contain spaces: state is index 0 here.
    return text.rpartition(")")[2].split()


def cpu_seconds(root: int) -> float:
    """User + system CPU of the tree: live processes, plus children the root already reaped."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        ticks += utime + stime
        if pid == root:
            ticks += cutime + cstime
    return ticks / CLOCK_TICKS


def rss_bytes(root: int) -> int:
    """Sum of VmRSS over the tree (shared pages count once per process, as ``ps`` shows)."""
    total = 0
    for pid in tree_pids(root):
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def cpu_load(cpu: int) -> tuple[float, float]:
    """``(busy, steal)`` seconds of one CPU since boot, from /proc/stat (any process on it)."""
    for line in (_PROC / "stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(x) for x in line.split()[1:9]
            )
            return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS
    return 0.0, 0.0


class PeakRssPoller:
    """Polls the tree's RSS on a thread while a ``with`` block runs; ``peak`` is the maximum."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-poller", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.root))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRssPoller:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, rss_bytes(self.root))
