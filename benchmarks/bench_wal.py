"""How large SQLite's WAL grows with several worker processes writing (docs/serve.md, Databases).

One ``miaudit serve --workers 2`` on 127.0.0.1 (SQLite WAL, ``synchronous=NORMAL``; the guard
as in the ``guard`` benchmark: keys of role ``analyst``, budget and rate limit, a log entry with
a keyed hash per record committed before each answer, detectors on), serving a scikit-learn
logistic regression on 20 features. Two phases, one after the other, on the same database:
an open loop paced at ``rate`` requests a second (one record each; the load generator of the
``guard`` benchmark, a raw-socket HTTP/1.1 client), then a closed loop of 8 clients as fast as
the server answers (saturation). A thread samples the size of the ``-wal`` file every 20 ms;
each phase reports its answers a second and the largest WAL size seen. The checkpointer's
settings (``miaudit.serve._store``) are reported beside them: past ``WAL_RESTART_FRAMES`` pages
each process's checkpointer copies the WAL holding its write lock, past ``WAL_FORCE_FRAMES`` it
checkpoints RESTART (holding every process's writers), and a restart truncates the file to
``WAL_SIZE_LIMIT``. None of them is a hard cap on the file: a reader left open, or writes that
keep landing between checkpoints, let it grow past them; what it reaches is measured here.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._folders import in_temporary_folder
from benchmarks._schema import BenchResult

CLAIM = (
    "With 2 worker processes writing, SQLite's WAL file stays bounded: its largest size under a "
    "paced load and at saturation (reported)"
)

SIZES = {
    "full": {"rate": 400, "paced_s": 30, "saturated_s": 30, "clients": 8},
    "small": {"rate": 100, "paced_s": 2, "saturated_s": 2, "clients": 4},
}
WORKERS = 2
PAGE = 4096  # SQLite's default page size; a WAL frame is a 24-byte header and one page


class _WalSampler:
    """The ``-wal`` file's size every ``every_s`` seconds in a thread: the largest, and the
    largest in each ``window_s`` window (a WAL that kept growing would show in them)."""

    def __init__(self, path: Path, every_s: float = 0.02, window_s: float = 5.0) -> None:
        self.path, self.every_s, self.window_s = path, every_s, window_s
        self.largest = 0
        self.samples = 0
        self.windows: list[int] = []
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                size = self.path.stat().st_size
            except OSError:  # between a truncation and the next write, or not made yet
                continue
            self.samples += 1
            self.largest = max(self.largest, size)
            w = int((time.monotonic() - self._t0) / self.window_s)
            self.windows += [0] * (w + 1 - len(self.windows))
            self.windows[w] = max(self.windows[w], size)

    def __enter__(self) -> _WalSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _frames(size: int) -> int:
    """WAL frames (pages) in a file of ``size`` bytes (a 32-byte header, then frames)."""
    return max(0, size - 32) // (PAGE + 24)


async def _paced(
    port: int, tokens: list[str | None], rate: float, seconds: float
) -> tuple[int, int]:
    """Open loop: request i is sent at i / rate seconds (one record each); (answered, errors)."""
    from benchmarks.bench_guard import _bodies, _Pool

    n = int(rate * seconds)
    bodies = _bodies(n, 11)
    pool = _Pool(port, 64)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
        if await pool.post(bodies[i], tokens[i % len(tokens)]) != 200:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    await pool.close()
    return n - errors, errors


async def _saturated(
    port: int, tokens: list[str | None], seconds: float, clients: int
) -> tuple[int, int]:
    """Closed loop: ``clients`` connections each sending its next request on each answer."""
    from benchmarks.bench_guard import _bodies, _Pool

    bodies = _bodies(4096, 12)
    pool = _Pool(port, clients)
    answered = errors = 0
    end = time.monotonic() + seconds

    async def client(c: int) -> None:
        nonlocal answered, errors
        i = c
        while time.monotonic() < end:
            if await pool.post(bodies[i % 4096], tokens[i % len(tokens)]) == 200:
                answered += 1
            else:
                errors += 1
            i += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    await pool.close()
    return answered, errors


def run(size: str) -> BenchResult:
    return in_temporary_folder("bench_wal_", _run, size)


def _run(size: str, tmp: Path) -> BenchResult:
    from sklearn.linear_model import LogisticRegression

    from benchmarks.bench_guard import FEATURES, _start
    from miaudit.models import save_sklearn
    from miaudit.serve import Store, load_server_secret
    from miaudit.serve._store import WAL_FORCE_FRAMES, WAL_RESTART_FRAMES, WAL_SIZE_LIMIT

    p = SIZES[size]
    rng = np.random.default_rng(0)
    xt = rng.normal(size=(5000, FEATURES))
    yt = np.argmax(xt[:, :5] + 0.5 * rng.normal(size=(5000, 5)), axis=1)
    save_sklearn(tmp / "model.skops", LogisticRegression(max_iter=300).fit(xt, yt))
    db_file = tmp / "guard.db"
    secret = load_server_secret(tmp / "guard.secret", create=True)
    store = Store(f"sqlite:///{db_file}")
    tokens: list[str | None] = [
        store.create_key(secret, "analyst", budget=10**9, rate=10**6).token for _ in range(4)
    ]
    store.close()
    server, url = _start(
        [
            "--model",
            str(tmp / "model.skops"),
            "--secret-file",
            str(tmp / "guard.secret"),
            "--db",
            f"sqlite:///{db_file}",
            "--workers",
            str(WORKERS),
        ],
        tmp / "server.log",
    )
    port = int(url.rsplit(":", 1)[1])
    wal = Path(f"{db_file}-wal")
    phases: dict[str, dict[str, Any]] = {}
    gc.collect()
    gc.freeze()
    try:
        for name, seconds, load in (
            ("paced", p["paced_s"], lambda: _paced(port, tokens, p["rate"], p["paced_s"])),
            (
                "saturated",
                p["saturated_s"],
                lambda: _saturated(port, tokens, p["saturated_s"], p["clients"]),
            ),
        ):
            load_1m = round(os.getloadavg()[0], 2)
            with _WalSampler(wal) as sampler:
                t0 = time.perf_counter()
                answered, errors = asyncio.run(load())
                wall = time.perf_counter() - t0
            phases[name] = {
                "seconds": seconds,
                "answers_per_s": round(answered / wall, 1),
                "answers_per_s_per_worker": round(answered / wall / WORKERS, 1),
                "errors": errors,
                "largest_wal_bytes": sampler.largest,
                "largest_wal_mib": round(sampler.largest / 2**20, 1),
                "largest_wal_frames": _frames(sampler.largest),
                "largest_wal_mib_per_5s": [round(b / 2**20, 1) for b in sampler.windows],
                "samples": sampler.samples,
                "load_1m_before": load_1m,
            }
    finally:
        gc.unfreeze()
        os.killpg(server.pid, 15)
        server.wait(timeout=20)
    figures: dict[str, Any] = {
        "workers": WORKERS,
        "paced_rate_rps": p["rate"],
        "clients": p["clients"],
        **phases,
        "wal_restart_frames": WAL_RESTART_FRAMES,
        "wal_force_frames": WAL_FORCE_FRAMES,
        "wal_force_mib": round(WAL_FORCE_FRAMES * (PAGE + 24) / 2**20, 1),
        "wal_size_limit_mib": WAL_SIZE_LIMIT / 2**20,
    }
    table = "\n".join(
        [
            "| load (2 workers, one record a request) | answers a second (per worker) | errors | largest WAL file |",
            "|---|---|---|---|",
            *(
                f"| {label} | {f['answers_per_s']:.0f} ({f['answers_per_s_per_worker']:.0f}) | {f['errors']} | {f['largest_wal_mib']} MiB ({f['largest_wal_frames']:,} pages) |"
                for label, f in (
                    (f"paced at {p['rate']} requests/s, {p['paced_s']} s", phases["paced"]),
                    (
                        f"saturated, {p['clients']} clients, {p['saturated_s']} s",
                        phases["saturated"],
                    ),
                )
            ),
        ]
    )
    notes = [
        "largest WAL file in each 5 s (MiB): "
        + "; ".join(
            f"{name} {', '.join(f'{m:g}' for m in f['largest_wal_mib_per_5s'])}"
            for name, f in phases.items()
        ),
        f"checkpointer (miaudit.serve._store): copies under the process's write lock past {WAL_RESTART_FRAMES:,} pages, RESTART past {WAL_FORCE_FRAMES:,} pages ({figures['wal_force_mib']} MiB of frames), truncates to {WAL_SIZE_LIMIT / 2**20:g} MiB on a restart; the file's size sampled every 20 ms",
        "SQLite WAL, synchronous=NORMAL; role analyst (round:2), budget + rate limit, log with keyed record hashes, detectors on; the load generator runs on the same shared cores",
    ]
    return BenchResult(
        name="wal", claim=CLAIM, figures=figures, table=table, passed=None, notes=notes
    )


if __name__ == "__main__":
    res = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(res.table)
    print(res.figures)
