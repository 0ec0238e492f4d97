"""A bounded pool of daemon threads for plain ``def`` functions.

`concurrent.futures.ThreadPoolExecutor` joins its threads when the interpreter exits, so one
function stuck past its deadline (and threads cannot be cancelled) would keep a stopping server
alive until it is killed. This pool's threads are daemons: a process that has finished serving
exits, and what still runs past its deadline is abandoned.

An abandoned call (its caller gave up at the deadline) keeps its thread but no longer holds one of
the ``max_workers`` slots: the pool starts another thread for new calls, up to ``max_abandoned``
threads beyond ``max_workers`` in all, so a few stuck functions cannot starve every other call.
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
    """Runs callables on at most ``max_workers`` daemon threads, started as they are needed.

    Args:
        max_workers: Calls that may run at once (not counting abandoned ones).
        thread_name_prefix: Prefix of the threads' names.
        max_abandoned: Threads beyond ``max_workers`` that abandoned calls may keep busy.
    """

    def __init__(
        self, max_workers: int, thread_name_prefix: str = "worker", max_abandoned: int = 0
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.max_abandoned = max_abandoned
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._started = 0
        self._idle = 0
        self._busy = 0
        self._abandoned: set[Future[Any]] = set()
        self._shutdown = False

    @property
    def busy(self) -> int:
        """Callables submitted and not finished yet (queued or running, abandoned included)."""
        return self._busy

    @property
    def abandoned(self) -> int:
        """Calls still running whose caller gave up on them."""
        return len(self._abandoned)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; a thread is started if none is idle."""
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._busy += 1
            self._work.put((future, fn, args, kwargs))
            if self._idle > 0:
                self._idle -= 1  # that idle thread takes this item
            elif self._may_start_thread():
                self._start_thread()
        return future

    def abandon(self, future: Future[Any]) -> None:
        """The caller gave up on ``future``: cancel it if it has not started, else free its slot."""
        if future.cancel():
            return  # never ran: the worker that meets it skips it
        with self._lock:
            if not future.done():
                self._abandoned.add(future)
                if self._work.qsize() > self._idle and self._may_start_thread():
                    self._start_thread()  # calls are queued behind the stuck one

    def _may_start_thread(self) -> bool:
        live = len(self._threads)
        return (
            live - len(self._abandoned) < self.max_workers
            and live < self.max_workers + self.max_abandoned
        )

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work_loop, name=f"{self._prefix}-{self._started}", daemon=True
        )
        self._started += 1
        self._threads.add(thread)
        thread.start()

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
        me = threading.current_thread()
        while True:
            item = self._work.get()
            if item is None:
                with self._lock:
                    self._threads.discard(me)
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
                self._abandoned.discard(future)
                if len(self._threads) > self.max_workers and self._work.qsize() <= self._idle:
                    # A thread started to stand in for an abandoned one: not needed any more.
                    self._threads.discard(me)
                    return
                self._idle += 1
