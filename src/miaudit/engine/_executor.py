"""Executors: submit a training unit, its result lands in the cache.

``LocalExecutor`` runs units in worker processes with a fixed number of torch threads each
(one by default: several processes each using torch's default threads oversubscribe the
cores, PERFORMANCE.md), or in this process when ``workers == 0``. A cluster executor (Ray)
implements the same protocol.

Workers are spawned without the caller's main module: a plain script (no
``if __name__ == "__main__":`` guard) or a notebook can train with workers, and a worker never
re-runs the caller's script (which would train the user's model a second time, then fail when
the re-run script starts workers of its own). Everything a worker runs is importable from
miaudit or from the modules a config names.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import multiprocessing.context as mp_context
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from miaudit.engine._unit import Emit, Event, UnitJob, UnitOutcome, run_unit
from miaudit.errors import MiauditError


class WorkerDied(MiauditError, OSError):
    """A training process or node died under the run (the system's out-of-memory killer, a
    lost node): a failure outside miaudit, not a bug to report. An ``OSError`` named
    "training", so the CLI prints one line ``error: training: …`` and exits 2 as for any
    failure of the machine (a killed worker was "internal error … please report it", exit 1)."""

    def __init__(self, problem: str) -> None:
        super().__init__(errno.EIO, problem, "training")

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"

    def __reduce__(self) -> tuple[type[WorkerDied], tuple[str]]:
        return (type(self), (str(self.strerror),))


@runtime_checkable
class Executor(Protocol):
    """Trains units. ``submit`` returns a future of the published unit; ``events`` receives
    progress events ``(kind, unit, done, total)`` while it runs."""

    def submit(self, job: UnitJob) -> Future[UnitOutcome]: ...

    def start(self, events: Emit) -> None: ...

    def close(self) -> None: ...


_MAIN_LOCK = threading.Lock()


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While a worker is launched, ``__main__`` has no file and no module name: multiprocessing
    then tells the child not to import it (it would run an unguarded script again)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _MAIN_LOCK:
        saved: dict[str, Any] = {
            k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
        }
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        try:
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """A worker starts with SIGINT ignored: a signal ignored at ``exec`` stays ignored, and
    Python then installs no KeyboardInterrupt handler. Ctrl-C goes to the whole process group,
    and while a worker was importing torch it printed a 17-line "Exception in initializer"
    traceback (red team); the parent handles Ctrl-C and stops the workers. SIGINT is blocked
    meanwhile, so one arriving in the parent is delivered once its handler is back, not lost."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _WorkerProcess(mp_context.SpawnProcess):
    """A spawned process whose child leaves the caller's main module alone and ignores Ctrl-C
    until it is ready to train."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        with _main_script_hidden(), _children_ignore_sigint():
            return mp_context.SpawnProcess._Popen(process_obj)


class _WorkerContext(mp_context.SpawnContext):
    """ "spawn" (a forked child would inherit torch's thread pools and locks mid-state), with
    workers that never import the caller's main module."""

    Process = _WorkerProcess


_WORKER_QUEUE: mp.Queue[Event | None] | None = None  # set in each worker process by _init_worker


def _init_worker(threads: int, events: mp.Queue[Event | None]) -> None:
    global _WORKER_QUEUE
    import torch

    torch.set_num_threads(threads)
    _WORKER_QUEUE = events
    # Ready: from now on Ctrl-C stops the unit this worker trains (the exception goes back to
    # the parent, which says "interrupted"), as it stops the parent. Unblocked first, while
    # still ignored: a Ctrl-C pending since the start (the parent's stop) is dropped.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _emit_to_queue(event: Event) -> None:
    if _WORKER_QUEUE is not None:
        _WORKER_QUEUE.put(event)


def _run_in_worker(job: UnitJob) -> UnitOutcome:
    return run_unit(job, _emit_to_queue)


class LocalExecutor:
    """``workers`` processes × ``threads`` torch threads each; ``workers == 0``: this process.

    Workers are spawned without importing the caller's main module (module docstring): a
    plain script, a notebook, a module or the CLI can all train with workers.
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
        ctx = _WorkerContext()
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

    def stop_workers(self) -> None:
        """Kill the worker processes (on Ctrl-C or SIGTERM): one still starting ignores SIGINT
        and would otherwise train the unit it picks up while the parent waits for it."""
        if self._pool is None:
            return
        processes: dict[int, Any] = getattr(self._pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()

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
