"""A bounded pool of daemon threads for plain ``def`` functions.

`concurrent.futures.ThreadPoolExecutor` joins its threads when the interpreter exits, so one
function stuck past its deadline (and threads cannot be cancelled) would keep a stopping server
alive until it is killed. This pool's threads are daemons: a process that has finished serving
exits, and what still runs past its deadline is abandoned.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaemonThreadPool"]

P = ParamSpec("P")
T = TypeVar("T")

_WorkItem = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(Executor):
    """Runs callables on at most ``max_workers`` daemon threads, started as they are needed."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "worker") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Released by a worker each time it finishes an item: one permit per idle worker.
        self._idle = threading.Semaphore(0)
        self._busy = 0
        self._shutdown = False

    @property
    def busy(self) -> int:
        """Callables submitted and not finished yet (queued or running)."""
        return self._busy

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; a thread is started if none is idle."""
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._busy += 1
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(timeout=0) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work_loop,
                    name=f"{self._prefix}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; with ``cancel_futures``, cancel what has not started."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._finish_unstarted(item[0])
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _finish_unstarted(self, future: Future[Any]) -> None:
        future.cancel()
        with self._lock:
            self._busy -= 1

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to the caller, whatever it is
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            with self._lock:
                self._busy -= 1
            self._idle.release()
