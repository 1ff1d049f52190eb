"""The prediction service's guard under load (issue 7): what keys, policy, budget, log and
detectors cost per request.

Two servers of the same model on 127.0.0.1, each ``miaudit serve`` with one worker process:
the guarded service (SQLite WAL, ``synchronous=NORMAL``; keys, role policy ``round:2``, a record
budget and a rate limit checked by the conditional UPDATE, the log entry with one keyed hash per
record committed before the answer, all four detectors) and the same model with nothing in front
of it (``--no-guard``). The model: scikit-learn logistic regression, 20 features, 5 classes.

Load: open loop at a fixed rate (200 requests/s) from a minimal raw-socket HTTP/1.1 client (httpx
itself costs as much CPU per request as the unguarded server), one record per request, distinct records,
4 keys in turn; latency is measured from each request's *scheduled* send time to its answer,
so that a server falling behind shows up in the tail (no coordinated omission). The two
servers are measured in alternating rounds (8 × 5 s each). A closed loop (8 concurrent clients)
gives each server's maximum throughput.

The statistic: the p99 of every request of every round, pooled (8,000 per server), guarded
minus unguarded; the claim holds when that is at most 5 ms and no request failed. Every round's
p99s, their differences and the largest of them are reported beside it, with each run's load
for both servers: CPU pressure (Linux PSI, ``some avg10``) before and after, the 1-minute load
average, the share of the machine's CPU busy during the run (``/proc/stat``) and the server's
CPU time per request. (Until 2026-12-07 the claim was judged on the median of the 8 per-round
differences, which a tail in 3 rounds of 8 does not move: it read +2.9 ms, met, while the
guarded server's pooled p99 was 128 ms against 3.5 ms. The tail was the guard's: full
collections of Python's cycle collector, 100–300 ms with every thread stopped, grown by the
detectors' state; see :mod:`miaudit.serve._monitor`.)

The load generator's own cycle collector is kept out of the measurement: its heap is frozen
before the rounds and collection is off during each run (its full collections, about 200 ms,
stalled the sending of either server's requests at the start of a run).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._folders import in_temporary_folder
from benchmarks._schema import BenchResult

CLAIM = "At 200 requests/s (one record each, loopback), the guard adds at most 5 ms to /predict's p99 latency, pooled over every request of 8 alternating rounds"

SIZES = {
    "full": {"seconds": 5, "rounds": 8, "closed_s": 4},
    "small": {"seconds": 2, "rounds": 1, "closed_s": 1},
}
RATE = 200
FEATURES, CLASSES = 20, 5
LIMIT_MS = 5.0


def _cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI), in %."""
    try:
        with open("/proc/pressure/cpu", encoding="utf-8") as fh:
            return float(fh.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def _machine_busy() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far (Linux /proc/stat; (0, 0) elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(ticks), ticks[3] + ticks[4]


def _measured_run(
    url: str, tokens: list[str | None], seconds: float, seed: int, pid: int
) -> tuple[np.ndarray, int, dict[str, float | None]]:
    """One open-loop run with the load generator's cycle collector off, and the load it ran
    under: PSI before and after, load average, machine CPU busy share, server CPU per request."""
    load: dict[str, float | None] = {
        "psi_before": _cpu_pressure(),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    ticks0, cpu0 = _machine_busy(), _cpu_seconds(pid)
    gc.disable()
    try:
        got, errors = asyncio.run(_open_loop(url, tokens, seconds, seed=seed))
    finally:
        gc.enable()
    ticks1 = _machine_busy()
    load["server_cpu_us_per_request"] = round(1e6 * (_cpu_seconds(pid) - cpu0) / (got.size + 20), 1)
    total = ticks1[0] - ticks0[0]
    load["machine_busy"] = round(1 - (ticks1[1] - ticks0[1]) / total, 3) if total else None
    load["psi_after"] = _cpu_pressure()
    return got, errors, load


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-c",
        "from miaudit.cli._serve import serve_app; serve_app()",
        "serve",
        *args,
        "--port",
        str(port),
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            if httpx.post(
                url + "/predict", json={"record": [0.0] * FEATURES}, timeout=1
            ).status_code in (200, 401):
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


class _Pool:
    """A minimal HTTP/1.1 keep-alive client on raw asyncio streams: the load generator shares the
    machine with the servers, so it must cost far less CPU per request than they do (httpx costs
    about as much as the unguarded server)."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def post(self, body: bytes, token: str | None) -> int:
        if self.free.empty() and self.opened < self.size:
            self.opened += 1
            conn = await asyncio.open_connection("127.0.0.1", self.port)
        else:
            conn = await self.free.get()
        reader, writer = conn
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{auth}\r\n"
        writer.write(head.encode() + body)
        status = int((await reader.readline()).split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        self.free.put_nowait(conn)
        return status

    async def close(self) -> None:
        while not self.free.empty():
            _r, w = self.free.get_nowait()
            w.close()


def _bodies(n: int, seed: int) -> list[bytes]:
    x = np.random.default_rng(seed).normal(size=(n, FEATURES))
    return [json.dumps({"record": row}).encode() for row in x.tolist()]


async def _open_loop(
    url: str, tokens: list[str | None], seconds: float, seed: int
) -> tuple[np.ndarray, int]:
    n = int(RATE * seconds)
    bodies = _bodies(n + 20, seed)
    lat = np.full(n, np.nan)
    errors = 0
    pool = _Pool(int(url.rsplit(":", 1)[1]), 64)
    for i in range(20):  # warm the connections and the server
        await pool.post(bodies[n + i], tokens[i % len(tokens)])
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        start = t0 + i / RATE
        await asyncio.sleep(max(0.0, start - loop.time()))
        if await pool.post(bodies[i], tokens[i % len(tokens)]) != 200:
            errors += 1
        lat[i] = loop.time() - start

    await asyncio.gather(*(one(i) for i in range(n)))
    await pool.close()
    return lat * 1000.0, errors


async def _closed_loop(url: str, tokens: list[str | None], seconds: float) -> float:
    bodies = _bodies(4096, 9)
    pool = _Pool(int(url.rsplit(":", 1)[1]), 8)
    done = 0
    end = time.monotonic() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.monotonic() < end:
            await pool.post(bodies[i % 4096], tokens[i % len(tokens)])
            done += 1
            i += 8

    t = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(8)))
    rate = done / (time.monotonic() - t)
    await pool.close()
    return rate


def run(size: str) -> BenchResult:
    return in_temporary_folder("bench_guard_", _run, size)


def _run(size: str, tmp: Path) -> BenchResult:
    from sklearn.linear_model import LogisticRegression

    from miaudit.models import save_sklearn
    from miaudit.serve import Store, load_server_secret

    p = SIZES[size]
    load_before = round(os.getloadavg()[0], 2)
    rng = np.random.default_rng(0)
    xt = rng.normal(size=(5000, FEATURES))
    yt = np.argmax(xt[:, :CLASSES] + 0.5 * rng.normal(size=(5000, CLASSES)), axis=1)
    save_sklearn(tmp / "model.skops", LogisticRegression(max_iter=300).fit(xt, yt))
    db = f"sqlite:///{tmp}/guard.db"
    secret = load_server_secret(tmp / "guard.secret", create=True)
    store = Store(db)
    tokens: list[str | None] = [
        store.create_key(secret, "analyst", budget=10**9, rate=10**6).token for _ in range(4)
    ]
    store.close()

    common = ["--model", str(tmp / "model.skops"), "--secret-file", str(tmp / "guard.secret")]
    guarded, gurl = _start([*common, "--db", db], tmp / "guarded.log")
    bare, burl = _start(
        [*common, "--db", f"sqlite:///{tmp}/unused.db", "--no-guard"], tmp / "bare.log"
    )
    lat: dict[str, list[np.ndarray]] = {"guarded": [], "unguarded": []}
    errs = {"guarded": 0, "unguarded": 0}
    loads: dict[str, list[dict[str, float | None]]] = {"guarded": [], "unguarded": []}
    gc.collect()
    gc.freeze()  # the load generator's heap (numpy, scikit-learn, miaudit): never scanned again
    try:
        for r in range(p["rounds"]):
            for name, url, toks in (
                (("unguarded", burl, [None]), ("guarded", gurl, tokens))
                if r % 2 == 0
                else (("guarded", gurl, tokens), ("unguarded", burl, [None]))
            ):
                pid = (guarded if name == "guarded" else bare).pid
                seed = 100 * r + (name == "guarded")
                got, e, load = _measured_run(url, toks, p["seconds"], seed, pid)
                lat[name].append(got)
                errs[name] += e
                loads[name].append(load)
        tput = {
            "unguarded": asyncio.run(_closed_loop(burl, [None], p["closed_s"])),
            "guarded": asyncio.run(_closed_loop(gurl, tokens, p["closed_s"])),
        }
    finally:
        gc.unfreeze()
        for proc in (guarded, bare):
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)
    figures, table, notes = _report(p, lat, errs, loads, tput, load_before)
    passed = (
        figures["p99_overhead_ms"] <= LIMIT_MS and errs["guarded"] == 0 and errs["unguarded"] == 0
    )
    return BenchResult(
        name="guard", claim=CLAIM, figures=figures, table=table, passed=passed, notes=notes
    )


# Long: the figures, the per-round table with both servers' load and the notes, in one place so
# that what the table shows and what the figures hold cannot drift apart.
def _report(
    p: dict[str, int],
    lat: dict[str, list[np.ndarray]],
    errs: dict[str, int],
    loads: dict[str, list[dict[str, float | None]]],
    tput: dict[str, float],
    load_before: float,
) -> tuple[dict[str, Any], str, list[str]]:
    names = ("unguarded", "guarded")
    pooled = {name: np.concatenate(lat[name]) for name in names}
    per_round = {
        name: [(float(np.percentile(a, 50)), float(np.percentile(a, 99))) for a in lat[name]]
        for name in names
    }
    figures: dict[str, Any] = {
        "rate_rps": RATE,
        "requests_per_server": int(pooled["guarded"].size),
        "rounds": p["rounds"],
        "statistic": "pooled p99 over every request of every round, guarded minus unguarded",
    }
    for name in names:
        figures[f"{name}_p50_ms"] = round(float(np.percentile(pooled[name], 50)), 3)
        figures[f"{name}_p99_ms"] = round(float(np.percentile(pooled[name], 99)), 3)
        figures[f"{name}_p999_ms"] = round(float(np.percentile(pooled[name], 99.9)), 3)
        figures[f"{name}_max_ms"] = round(float(pooled[name].max()), 3)
        figures[f"{name}_p99_ms_per_round"] = [round(r[1], 3) for r in per_round[name]]
        figures[f"{name}_max_rps"] = round(tput[name], 1)
        figures[f"{name}_errors"] = errs[name]
        figures[f"{name}_load_per_round"] = loads[name]
        cpu = [float(x["server_cpu_us_per_request"] or 0.0) for x in loads[name]]
        figures[f"{name}_cpu_us_per_request"] = round(float(np.median(cpu)), 1)
    diffs = [
        round(g[1] - u[1], 3)
        for g, u in zip(per_round["guarded"], per_round["unguarded"], strict=True)
    ]
    figures["p99_overhead_ms"] = round(figures["guarded_p99_ms"] - figures["unguarded_p99_ms"], 3)
    figures["p50_overhead_ms"] = round(figures["guarded_p50_ms"] - figures["unguarded_p50_ms"], 3)
    figures["p99_overhead_ms_per_round"] = diffs
    figures["p99_overhead_ms_max_of_rounds"] = max(diffs)
    figures["cpu_overhead_us_per_request"] = round(
        figures["guarded_cpu_us_per_request"] - figures["unguarded_cpu_us_per_request"], 1
    )
    figures["load_average_1m_before"] = load_before

    def load_cell(x: dict[str, float | None]) -> str:
        return f"{x['psi_before']}→{x['psi_after']} % / {x['machine_busy']} / {x['load_1m']}"

    table = "\n".join(
        [
            "| server | p50 (ms, pooled) | p99 (ms, pooled) | p99.9 (ms, pooled) | max (ms) | max throughput (req/s, 8 clients) | errors |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {name} | {figures[f'{name}_p50_ms']} | {figures[f'{name}_p99_ms']} | {figures[f'{name}_p999_ms']} | {figures[f'{name}_max_ms']} | {figures[f'{name}_max_rps']} | {figures[f'{name}_errors']} |"
                for name in names
            ),
            f"| **guard overhead** | {figures['p50_overhead_ms']} | **{figures['p99_overhead_ms']}** (pooled p99 difference: the claim's statistic) | | | | |",
            "",
            "| round (first server) | unguarded p99 (ms) | guarded p99 (ms) | difference (ms) | unguarded load: PSI before→after / CPU busy / load avg | guarded load: PSI before→after / CPU busy / load avg |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r + 1} ({'unguarded' if r % 2 == 0 else 'guarded'}) | {per_round['unguarded'][r][1]:.2f} | {per_round['guarded'][r][1]:.2f} | {diffs[r]:+.2f} | {load_cell(loads['unguarded'][r])} | {load_cell(loads['guarded'][r])} |"
                for r in range(p["rounds"])
            ),
            "",
            f"Largest per-round p99 difference: {figures['p99_overhead_ms_max_of_rounds']} ms. Server CPU time per request (median of rounds): unguarded {figures['unguarded_cpu_us_per_request']} µs, guarded {figures['guarded_cpu_us_per_request']} µs (+{figures['cpu_overhead_us_per_request']} µs).",
        ]
    )
    notes = [
        f"open loop at {RATE} requests/s, one record per request, {p['seconds']} s × {p['rounds']} rounds per server, alternating; latency from the scheduled send time; the claim is judged on the pooled p99 ({figures['requests_per_server']} requests per server)",
        f"1-minute load average before the run {load_before}; per run, for both servers: CPU pressure (PSI some avg10, %) before→after, the machine's CPU busy share during the run, the 1-minute load average (2 shared cores: other work on the machine shows up as tails in both servers)",
        "guarded: SQLite WAL synchronous=NORMAL (WAL checkpointed off the request path), role analyst (round:2), budget + rate limit, log with keyed record hashes, detectors on; 1 worker each",
    ]
    return figures, table, notes


if __name__ == "__main__":
    res = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(res.table)
    print(res.figures)
