"""Executors: submit a training unit, its result lands in the cache.

``LocalExecutor`` runs units in worker processes with a fixed number of torch threads each
(one by default: several processes each using torch's default threads oversubscribe the
cores, PERFORMANCE.md), or in this process when ``workers == 0``. A cluster executor (Ray)
implements the same protocol.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol, runtime_checkable

from miaudit.engine._unit import Emit, Event, UnitJob, UnitOutcome, run_unit


@runtime_checkable
class Executor(Protocol):
    """Trains units. ``submit`` returns a future of the published unit; ``events`` receives
    progress events ``(kind, unit, done, total)`` while it runs."""

    def submit(self, job: UnitJob) -> Future[UnitOutcome]: ...

    def start(self, events: Emit) -> None: ...

    def close(self) -> None: ...


_WORKER_QUEUE: mp.Queue[Event | None] | None = None  # set in each worker process by _init_worker


def _init_worker(threads: int, events: mp.Queue[Event | None]) -> None:
    global _WORKER_QUEUE
    import torch

    torch.set_num_threads(threads)
    _WORKER_QUEUE = events


def _emit_to_queue(event: Event) -> None:
    if _WORKER_QUEUE is not None:
        _WORKER_QUEUE.put(event)


def _run_in_worker(job: UnitJob) -> UnitOutcome:
    return run_unit(job, _emit_to_queue)


class LocalExecutor:
    """``workers`` processes × ``threads`` torch threads each; ``workers == 0``: this process.

    Workers are started with "spawn", so a program that trains with workers must be importable
    (a script with an ``if __name__ == "__main__":`` guard, a module, the CLI), not read from
    standard input.
    """

    def __init__(self, workers: int = 2, threads: int = 1) -> None:
        self.workers, self.threads = workers, threads
        self._pool: ProcessPoolExecutor | None = None
        self._queue: mp.Queue[Event | None] | None = None  # None: the drain thread stops
        self._drain: threading.Thread | None = None
        self._events: Emit = lambda _e: None
        self._futures: list[Future[UnitOutcome]] = []
        self._done_events = 0
        self._done_seen = threading.Condition()

    def start(self, events: Emit) -> None:
        self._events = events
        if self.workers == 0 or self._pool is not None:
            return
        # spawn: a forked child would inherit torch's thread pools and locks mid-state.
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.threads, self._queue),
        )
        self._drain = threading.Thread(target=self._forward, daemon=True)
        self._drain.start()

    def _forward(self) -> None:
        assert self._queue is not None
        while True:
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._pool is None:
                    return
                continue
            except (EOFError, OSError):
                return
            if event is None:
                return
            self._events(event)
            if event[0] == "done":
                with self._done_seen:
                    self._done_events += 1
                    self._done_seen.notify_all()

    def submit(self, job: UnitJob) -> Future[UnitOutcome]:
        if self.workers == 0:
            fut: Future[UnitOutcome] = Future()
            try:
                fut.set_result(run_unit(job, self._events))
            except Exception as exc:  # noqa: BLE001 - delivered through the future
                fut.set_exception(exc)
            return fut
        if self._pool is None:
            self.start(self._events)
        assert self._pool is not None
        fut = self._pool.submit(_run_in_worker, job)
        self._futures.append(fut)
        return fut

    def close(self) -> None:
        if self._pool is not None:
            ok = all(
                f.done() and not f.cancelled() and f.exception() is None for f in self._futures
            )
            if ok:
                # Every unit is published: once its last progress events have arrived (they
                # travel apart from the results), the idle workers may exit in the background
                # rather than being waited for through torch's teardown.
                with self._done_seen:
                    self._done_seen.wait_for(
                        lambda: self._done_events >= len(self._futures), timeout=10
                    )
            # A failed run waits for the units already running, so none is published after
            # train() has returned.
            self._pool.shutdown(wait=not ok, cancel_futures=True)
            self._pool = None
            self._futures = []
            self._done_events = 0
        if self._queue is not None:
            self._queue.put(None)
            if self._drain is not None:
                self._drain.join(timeout=5)
            self._queue.close()
            self._queue.join_thread()
            self._queue = None


ExecutorFactory = Callable[[int, int], Executor]
