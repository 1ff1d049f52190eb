"""The bad-input suite: every command and file format, in process.

Each case asserts: exit status 2, exactly one line on stderr, ``error: `` and the name of the
bad input in it, no traceback, and no file left behind (empty folders may remain: a folder the
run was told to write into may exist before the input is read). Cases are built from tables
(defects × formats, defects × commands), so that a new command or format gets every defect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from miaudit.cli import main

Build = Callable[[Path], list[str]]
CASES: dict[str, tuple[Build, str]] = {}  # id -> (builds the files and returns argv, expected text)


def case(name: str, expect: str) -> Callable[[Build], Build]:
    def deco(fn: Build) -> Build:
        assert name not in CASES, name
        CASES[name] = (fn, expect)
        return fn

    return deco


def add(name: str, build: Build, expect: str) -> None:
    assert name not in CASES, name
    CASES[name] = (build, expect)


# --- usage: typer's own errors, caught without click ---------------------------------------------

USAGE = {
    "no-attack-argument": (["attack"], "Missing argument"),
    "resamples-not-a-number": (["attack", "x.npz", "--resamples", "abc"], "--resamples"),
    "seed-not-a-number": (["attack", "x.npz", "--seed", "1.5"], "--seed"),
    "prior-not-a-number": (["attack", "x.npz", "--prior", "half"], "--prior"),
    "unknown-option": (["attack", "x.npz", "--bogus"], "--bogus"),
    "mistyped-command": (["atack", "x.npz"], "atack"),
    "unknown-root-option": (["--bogus"], "--bogus"),
    "check-record-without-id": (["check-record", "res"], "--id"),
    "audit-without-config": (["audit", "--out", "o"], "config: missing argument"),
    "audit-without-out": (["audit", "c.toml"], "--out"),
    "train-without-out": (["train", "c.toml"], "--out"),
    "tradeoff-without-out": (["tradeoff", "c.toml"], "--out"),
    "dp-audit-without-config": (["dp-audit"], "Missing argument"),
    "dp-audit-canaries-not-a-number": (["dp-audit", "c.toml", "--canaries", "many"], "--canaries"),
    "report-without-results": (["report"], "Missing argument"),
    "keys-create-without-role": (["keys", "create"], "--role"),
    "keys-revoke-without-id": (["keys", "revoke"], "Missing argument"),
    "keys-unknown-subcommand": (["keys", "rotate"], "rotate"),
    "keys-window-not-a-number": (
        ["keys", "create", "--role", "admin", "--window", "abc"],
        "--window",
    ),
    "serve-port-not-a-number": (["serve", "--port", "http"], "--port"),
    "alerts-limit-not-a-number": (["alerts", "--limit", "all"], "--limit"),
    "demo-seed-not-a-number": (["demo", "--seed", "x"], "--seed"),
    "train-workers-not-a-number": (
        ["train", "c.toml", "--out", "o", "--workers", "two"],
        "--workers",
    ),
    "tradeoff-delta-not-a-number": (
        ["tradeoff", "c.toml", "--out", "o", "--delta", "small"],
        "--delta",
    ),
    "flag-given-a-value": (["attack", "x.npz", "--raw-ids=yes"], "--raw-ids"),
}
for _name, (_argv, _expect) in USAGE.items():
    add(f"usage/{_name}", lambda _t, a=_argv: list(a), _expect)


# --- model outputs: defects × formats ---------------------------------------------------------------

N = 8
LABEL = [0, 1, 0, 1, 2, 0, 1, 2]
MEMBER = [0, 1, 0, 1, 0, 1, 0, 1]
LOGIT = {
    "logit_0": [0.1, 0.2, 0.3, 0.1, 0.0, 0.5, 0.2, 0.1],
    "logit_1": [0.0] * N,
    "logit_2": [0.3] * N,
}


def _cols(**over: object) -> dict[str, list]:
    base: dict[str, list] = {**LOGIT, "label": list(LABEL), "member": list(MEMBER)}
    for k, v in over.items():
        if v is None:
            base.pop(k)
        else:
            base[k] = list(v)  # type: ignore[call-overload]
    return base


def _probs(p0: list[float]) -> dict[str, list]:
    p0a = np.asarray(p0)
    return {"prob_0": list(p0a), "prob_1": list((1 - p0a) / 2), "prob_2": list((1 - p0a) / 2)}


OUTPUT_DEFECTS: dict[str, tuple[dict[str, list], str]] = {
    "nan-logit": (_cols(logit_0=[np.nan, *LOGIT["logit_0"][1:]]), "logits"),
    "inf-logit": (_cols(logit_1=[np.inf] + [0.0] * (N - 1)), "logits"),
    "members-only": (_cols(member=[1] * N), "member"),
    "non-members-only": (_cols(member=[0] * N), "member"),
    "member-not-binary": (_cols(member=[0, 1, 2, 1, 0, 1, 0, 1]), "member"),
    # one member: the implied ε's halves were empty and the error named y_true (red team)
    "one-member": (_cols(member=[1, 0, 0, 0, 0, 0, 0, 0]), "member: 1 member(s)"),
    "label-out-of-range": (_cols(label=[0, 1, 0, 5, 2, 0, 1, 2]), "label"),
    "negative-label": (_cols(label=[0, 1, 0, -1, 2, 0, 1, 2]), "label"),
    "fractional-label": (_cols(label=[0, 1, 0, 1.5, 2, 0, 1, 2]), "label"),
    "no-member-column": (_cols(member=None), "member"),
    "no-label-column": (_cols(label=None), "label"),
    "no-logits-or-probs": ({"label": LABEL, "member": MEMBER}, "logits"),
    "probs-do-not-sum-to-1": (
        {**_probs([0.1] * N), "prob_0": [0.9] * N, "label": LABEL, "member": MEMBER},
        "probs",
    ),
    "negative-prob": (
        {**_probs([-0.1] + [0.2] * (N - 1)), "label": LABEL, "member": MEMBER},
        "probs",
    ),
    "wide-columns-with-a-gap": (
        {
            "logit_0": LOGIT["logit_0"],
            "logit_2": LOGIT["logit_2"],
            "label": [0, 1] * 4,
            "member": MEMBER,
        },
        "logits",
    ),
    "string-logits": (_cols(logit_0=["a"] * N), "logit"),
    "probabilities-as-logits": (  # would go through a softmax twice
        {
            "logit_0": [0.5] * N,
            "logit_1": [0.25] * N,
            "logit_2": [0.25] * N,
            "label": LABEL,
            "member": MEMBER,
        },
        "logits: every row is non-negative and sums to 1: these look like probabilities",
    ),
}


def _write_outputs(path: Path, cols: dict[str, list]) -> None:
    if path.suffix == ".csv":
        pd.DataFrame(cols).to_csv(path, index=False)
    elif path.suffix == ".parquet":
        pd.DataFrame(cols).to_parquet(path)
    else:
        arrays: dict[str, np.ndarray] = {}
        for wide, name in (("logit_", "logits"), ("prob_", "probs")):
            ks = sorted(k for k in cols if k.startswith(wide))
            if ks:
                try:
                    arrays[name] = np.column_stack([np.asarray(cols[k]) for k in ks])
                except ValueError:
                    arrays[name] = np.asarray([cols[k] for k in ks], dtype=object).T
        arrays.update(
            {k: np.asarray(v) for k, v in cols.items() if not k.startswith(("logit_", "prob_"))}
        )
        if "wide-columns" in path.stem:  # npz holds one array: the gap becomes a bad second axis
            arrays = {
                "logits": np.zeros((N, 2, 2)),
                "label": np.asarray(LABEL),
                "member": np.asarray(MEMBER),
            }
        np.savez(path, **arrays)


def _outputs_case(cols: dict[str, list], suffix: str, stem: str) -> Build:
    def build(tmp: Path) -> list[str]:
        path = tmp / f"{stem}{suffix}"
        _write_outputs(path, cols)
        return ["attack", str(path), "--out", str(tmp / "res"), "--resamples", "10"]

    return build


for _name, (_cols_, _expect) in OUTPUT_DEFECTS.items():
    for _suffix in (".csv", ".parquet", ".npz"):
        if _name == "string-logits" and _suffix == ".npz":
            continue  # npz cannot hold strings without pickle (refused: see below)
        add(
            f"outputs/{_suffix[1:]}/{_name}",
            _outputs_case(_cols_, _suffix, _name),
            "logits" if _suffix == ".npz" and _expect == "logit" else _expect,
        )


def _raw_file(name: str, content: bytes) -> Build:
    def build(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(content)
        return ["attack", str(path), "--out", str(tmp / "res")]

    return build


for _suffix in (".csv", ".parquet", ".npz"):
    add(f"outputs/{_suffix[1:]}/empty-file", _raw_file(f"empty{_suffix}", b""), "empty")
    add(
        f"outputs/{_suffix[1:]}/garbage-bytes",
        _raw_file(f"garbage{_suffix}", os.urandom(64) + b"\x00\xff"),
        "garbage",
    )
    add(
        f"outputs/{_suffix[1:]}/missing-file",
        lambda t, s=_suffix: ["attack", str(t / f"missing{s}")],
        "no such file",
    )
    add(
        f"outputs/{_suffix[1:]}/a-folder",
        lambda t, s=_suffix: [(t / f"dir{s}").mkdir(), "attack", str(t / f"dir{s}")][1:],
        "dir",
    )
add("outputs/xlsx/unknown-type", _raw_file("outputs.xlsx", b"PK"), "unknown file type")
add("outputs/none/no-suffix", _raw_file("outputs", b"x"), "unknown file type")
add(
    "outputs/csv/header-only",
    _raw_file("header.csv", b"logit_0,logit_1,label,member\n"),
    "no records",
)
add(
    "outputs/csv/duplicated-column",
    _raw_file("dup.csv", b"logit_0,logit_1,label,member,label\n0.1,0,0,0,1\n0.2,0,1,1,0\n"),
    "'label' twice",
)
add(
    "outputs/csv/not-utf8",
    _raw_file("latin.csv", "logit_0,logit_1,label,member,caf\xe9\n0.1,0,0,0,1\n".encode("latin-1")),
    "latin.csv",
)
add(
    "outputs/csv/ragged-rows",
    _raw_file("ragged.csv", b"logit_0,logit_1,label,member\n0.1,0,0,0\n0.2,0,1,1,7,8,9\n"),
    "ragged.csv",
)
add(
    "outputs/csv/one-row",
    _raw_file("one.csv", b"logit_0,logit_1,label,member\n0.1,0,0,0\n"),
    "member",
)


@case("outputs/npz/complex-logits", "logits")
def _complex(tmp: Path) -> list[str]:
    path = tmp / "complex.npz"
    np.savez(path, logits=np.ones((N, 3)) + 1j, label=np.asarray(LABEL), member=np.asarray(MEMBER))
    return ["attack", str(path)]


@case("outputs/npz/object-array-needs-pickle", "obj.npz")
def _pickled(tmp: Path) -> list[str]:
    path = tmp / "obj.npz"
    np.savez(
        path,
        logits=np.asarray([[1, "a"]] * N, dtype=object),
        label=np.asarray(LABEL),
        member=np.asarray(MEMBER),
    )
    return ["attack", str(path)]


@case("outputs/npz/lengths-differ", "length")
def _lengths(tmp: Path) -> list[str]:
    path = tmp / "len.npz"
    np.savez(path, logits=np.ones((N, 3)), label=np.asarray(LABEL[:-2]), member=np.asarray(MEMBER))
    return ["attack", str(path)]


@case("outputs/npz/bad-metadata", "metadata")
def _npz_meta(tmp: Path) -> list[str]:
    path = tmp / "meta.npz"
    np.savez(
        path,
        logits=np.ones((N, 3)),
        label=np.asarray(LABEL),
        member=np.asarray(MEMBER),
        miaudit=np.asarray("{not json"),
    )
    return ["attack", str(path)]


@case("outputs/npz/one-dimensional-logits", "logits")
def _one_d(tmp: Path) -> list[str]:
    path = tmp / "flat.npz"
    np.savez(path, logits=np.ones(N), label=np.asarray(LABEL), member=np.asarray(MEMBER))
    return ["attack", str(path)]


@case("outputs/npz/duplicate-record-ids", "record_id")
def _dup_ids(tmp: Path) -> list[str]:
    path = tmp / "ids.npz"
    np.savez(
        path,
        logits=np.ones((N, 3)),
        label=np.asarray(LABEL),
        member=np.asarray(MEMBER),
        record_id=np.asarray([1, 1, 2, 3, 4, 5, 6, 7]),
    )
    return ["attack", str(path)]


# --- attack: options, checked before any work --------------------------------------------------------


@pytest.fixture(scope="module")
def good_outputs(tmp_path_factory) -> Path:
    from tests.conftest import simulated_outputs

    path = tmp_path_factory.mktemp("good") / "outputs.parquet"
    simulated_outputs(n=300, seed=1).save(path)
    return path


GOOD = "<good>"  # replaced by the module's valid outputs file
ATTACK_OPTIONS = {
    "unknown-attack": (["--attacks", "loss,telepathy"], "telepathy"),
    "unknown-slice": (["--slices", "zipcode"], "zipcode"),
    "prior-above-1": (["--prior", "1.5"], "--prior"),
    "prior-0": (["--prior", "0"], "--prior"),
    "prior-nan": (["--prior", "nan"], "--prior"),
    "negative-seed": (["--seed", "-5"], "--seed"),
    "zero-resamples": (["--resamples", "0"], "--resamples"),
    "negative-resamples": (["--resamples", "-3"], "--resamples"),
    "unknown-policy": (["--policy", "bogus"], "--policy"),
    "round-without-digits": (["--policy", "round:x"], "--policy"),
    "top-0": (["--policy", "top-0"], "--policy"),
    "negative-noise": (["--policy", "noise:-1"], "--policy"),
    "bad-fail-on-rule": (["--fail-on", "bogus"], "--fail-on"),
    "fail-on-unknown-metric": (["--fail-on", "nope.upper>0.5"], "--fail-on"),
    "fail-on-not-a-number": (["--fail-on", "auc.lower>x"], "--fail-on"),
    "second-fail-on-bad": (["--fail-on", "auc.lower>0.9", "--fail-on", "auc>>1"], "--fail-on"),
    # a learner's walk: accepted, then refused after the whole audit with its files written
    "fail-on-fpr-not-reported": (["--fail-on", "tpr@5%fpr>0.5"], "--fail-on"),
}
for _name, (_opts, _expect) in ATTACK_OPTIONS.items():
    add(
        f"attack-options/{_name}",
        lambda t, o=_opts: ["attack", GOOD, "--out", str(t / "res"), *o],
        _expect,
    )


@case("attack-options/out-under-a-file", "--out")
def _out_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("x")
    return ["attack", GOOD, "--out", str(tmp / "file" / "res")]


@case("attack-options/out-is-a-file", "--out")
def _out_is_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("x")
    return ["attack", GOOD, "--out", str(tmp / "file")]


@case("attack-options/results-exist", "--overwrite")
def _exists(tmp: Path) -> list[str]:
    (tmp / "res").mkdir()
    (tmp / "res" / "results.json").write_text("{}")
    return ["attack", GOOD, "--out", str(tmp / "res")]


@case("attack-options/overwrite-an-audit-folder", "miaudit audit")
def _audit_folder(tmp: Path) -> list[str]:
    res = tmp / "res"
    (res / "signals").mkdir(parents=True)
    (res / "signals" / "signals.npz").write_bytes(b"old")
    for f in ("audit.json", "results.json"):
        (res / f).write_text("{}")
    return ["attack", GOOD, "--out", str(res), "--overwrite"]


@case("attack-options/overwrite-a-tradeoff-folder", "miaudit tradeoff")
def _tradeoff_folder(tmp: Path) -> list[str]:
    (tmp / "res").mkdir()
    (tmp / "res" / "tradeoff.json").write_text("{}")
    return ["attack", GOOD, "--out", str(tmp / "res"), "--overwrite"]


add("attack-options/markup-in-a-path", lambda t: ["attack", str(t / "x[/].npz")], "x[/].npz")
add(
    "attack-options/markup-that-would-style",
    lambda t: ["attack", str(t / "[red]x.npz")],
    "[red]x.npz",
)
add("attack-options/newline-in-a-path", lambda t: ["attack", str(t / "a\nb.npz")], "b.npz")


# --- check-record and report ---------------------------------------------------------------------------


def _results_json(*, reference: dict | None = None, exposure_attack: str | None = None) -> str:
    """A whole results.json (check-record reads only results that pass the schema): the golden
    reference audit's, with ``reference`` fields replaced (None: an audit from saved outputs)."""
    data = json.loads((Path(__file__).parents[1] / "golden/expected/audit.json").read_text())
    data["created_at"] = "2026-01-01T00:00:00Z"
    data["reference"] = None if reference is None else {**data["reference"], **reference}
    data["exposure_attack"] = exposure_attack
    return json.dumps(data)


def _signals_folder(tmp: Path, *, models: int = 6, metadata: dict | None = None) -> Path:
    from miaudit.data import SignalsStore

    rng = np.random.default_rng(0)
    n = 20
    keep = np.zeros((models, n), dtype=bool)
    keep[::2, : n // 2] = True
    keep[1::2, n // 2 :] = True
    store = SignalsStore.from_arrays(
        logits=rng.normal(size=(models, n, 3)),
        label=rng.integers(0, 3, n),
        keep=keep,
        record_id=np.arange(100, 100 + n),
    )
    res = tmp / "res"
    (res / "signals").mkdir(parents=True)
    (res / "results.json").write_text(  # an audit with reference models: check-record reads
        _results_json(reference={"models": models, "population_records": 0})  # these signals
    )
    store.save(res / "signals" / "signals.npz")
    if metadata is not None:
        with np.load(res / "signals" / "signals.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arrays["miaudit"] = np.asarray(json.dumps(metadata))
        np.savez(res / "signals" / "signals.npz", **arrays)
    return res


CHECK_RECORD = {
    "no-such-folder": (lambda t: ["check-record", str(t / "nope"), "--id", "1"], "results"),
    "folder-without-signals": (
        lambda t: [(t / "res").mkdir(), "check-record", str(t / "res"), "--id", "1"][1:],
        "results",
    ),
    "unknown-id": (lambda t: ["check-record", str(_signals_folder(t)), "--id", "99999"], "--id"),
    "results-of-another-schema": (  # red team: answered from a results.json of no known schema
        lambda t: [
            (t / "res").mkdir(),
            (t / "res" / "results.json").write_text(
                '{"schema_version": "miaudit.results/9", "exposure_attack": "loss"}'
            ),
            "check-record",
            str(t / "res"),
            "--id",
            "1",
        ][2:],
        "schema_version",
    ),
    "results-not-whole": (  # red team: answered from a results.json with a schema and one field
        lambda t: [
            (t / "res").mkdir(),
            (t / "res" / "results.json").write_text(
                '{"schema_version": "miaudit.results/4", "exposure_attack": "loss"}'
            ),
            "check-record",
            str(t / "res"),
            "--id",
            "1",
        ][2:],
        "is not miaudit results (tool_version: Field required)",
    ),
    "results-nested-past-reason": (
        lambda t: [
            (t / "res").mkdir(),
            (t / "res" / "results.json").write_text("[" * 100_000 + "]" * 100_000),
            "check-record",
            str(t / "res"),
            "--id",
            "1",
        ][2:],
        "recursion limit",
    ),
    "empty-id": (lambda t: ["check-record", str(_signals_folder(t)), "--id", ""], "--id"),
    "negative-target": (
        lambda t: ["check-record", str(_signals_folder(t)), "--id", "101", "--target", "-1"],
        "target",
    ),
    "target-out-of-range": (
        lambda t: ["check-record", str(_signals_folder(t)), "--id", "101", "--target", "99"],
        "target",
    ),
    "garbage-signals": (
        lambda t: [
            (t / "res" / "signals").mkdir(parents=True),
            (t / "res" / "results.json").write_text(_results_json(reference={})),
            (t / "res" / "signals" / "signals.npz").write_bytes(b"junk"),
            "check-record",
            str(t / "res"),
            "--id",
            "1",
        ][3:],
        "signals",
    ),
    "metadata-shape-not-numbers": (
        lambda t: [
            "check-record",
            str(_signals_folder(t, metadata={"logits_shape": ["a", 2, 3]})),
            "--id",
            "101",
        ],
        "logits_shape",
    ),
    "metadata-target-a-string": (
        lambda t: [
            "check-record",
            str(_signals_folder(t, metadata={"target": "zero"})),
            "--id",
            "101",
        ],
        "metadata.target",
    ),
    "metadata-info-a-list": (
        lambda t: [
            "check-record",
            str(_signals_folder(t, metadata={"info": [1, 2]})),
            "--id",
            "101",
        ],
        "metadata.info",
    ),
    "metadata-wrong-schema": (
        lambda t: [
            "check-record",
            str(_signals_folder(t, metadata={"schema": "v0"})),
            "--id",
            "101",
        ],
        "schema",
    ),
    "metadata-a-list": (
        lambda t: ["check-record", str(_signals_folder(t, metadata=[1])), "--id", "101"],
        "metadata",
    ),  # type: ignore[arg-type]
}
for _name, (_b, _expect) in CHECK_RECORD.items():
    add(f"check-record/{_name}", _b, _expect)


# --- red-team inputs: each was an internal error (exit 1) ----------------------------------------


def _saved_folder(tmp: Path, scores: bytes) -> Path:
    from miaudit.audit._pseudonyms import key_id

    res = tmp / "res"
    res.mkdir()
    secret = np.random.default_rng(7).bytes(32)
    results = json.loads(_results_json(exposure_attack="loss"))
    results["pseudonymisation"]["key_id"] = key_id(secret)  # the folder's own key made them
    (res / "results.json").write_text(json.dumps(results))
    (res / "scores.parquet").write_bytes(scores)
    key = res / "pseudonym.key"
    key.write_bytes(secret)
    key.chmod(0o600)
    return res


def _reference_set(tmp: Path, given: str) -> list[str]:
    res = _signals_folder(tmp)
    (res / "results.json").write_text(_results_json(reference={"reference_set": json.loads(given)}))
    return ["check-record", str(res), "--id", "101"]


add(
    "red-team/scores-not-parquet-check-record",
    lambda t: ["check-record", str(_saved_folder(t, b"not parquet")), "--id", "1"],
    "as the run's scores",
)
add(
    "red-team/scores-not-parquet-ids",
    lambda t: ["ids", str(_saved_folder(t, b"not parquet"))],
    "as the run's scores",
)


def _bomb_scores(tmp: Path) -> bytes:
    """A few KB of Parquet whose dictionary column expands to 200,000-byte ids, 1 GB once read
    (check-record and ids read it through pandas whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 5_000
    ids = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), ["A" * 200_000])
    path = tmp / "bomb.parquet"
    pq.write_table(pa.table({"record_id": ids, "member": np.zeros(n, np.int8)}), path)
    return path.read_bytes()


add(
    "red-team/scores-bomb-check-record",
    lambda t: ["check-record", str(_saved_folder(t, _bomb_scores(t))), "--id", "1"],
    "as the run's scores",
)
add(
    "red-team/scores-bomb-ids",
    lambda t: ["ids", str(_saved_folder(t, _bomb_scores(t)))],
    "as the run's scores",
)


def _scores_parquet(tmp: Path, tamper: str) -> bytes:
    """Scores as the golden results describe them (2,880 records, 1,440 members), tampered."""
    import pandas as pd

    n = 2880
    table = pd.DataFrame(
        {
            "record_id": np.arange(n),
            "member": np.arange(n) % 2,
            "label": np.zeros(n, dtype=np.int64),
            "score_loss": np.random.default_rng(1).normal(size=n),
        }
    )
    if tamper == "nan":
        table.loc[1, "score_loss"] = np.nan  # a non-member's
    elif tamper == "member-not-0-1":
        table["member"] = table["member"] * 0.5 + 0.25
    elif tamper == "duplicate-id":
        table.loc[3, "record_id"] = 2
    elif tamper == "another-run":
        table = table.iloc[:-2]
    table.to_parquet(tmp / "s.parquet")
    return (tmp / "s.parquet").read_bytes()


# red team: each gave fabricated p-values with exit 0 (NaN non-member scores: every record p = 0.005)
for _tamper, _said in (
    ("nan", "non-finite score_loss"),
    ("member-not-0-1", "memberships other than 0 and 1"),
    ("duplicate-id", "a record id more than once"),
    ("another-run", "the folder mixes two runs"),
):
    add(
        f"red-team/scores-{_tamper}",
        lambda t, k=_tamper: [
            "check-record",
            str(_saved_folder(t, _scores_parquet(t, k))),
            "--id",
            "0",
        ],
        _said,
    )
add(  # red team: signals of a run with other models answered as this run's, exit 0
    "red-team/signals-of-another-run",
    lambda t: [
        (r := _signals_folder(t)),
        (r / "results.json").write_text(
            _results_json(reference={"models": 10, "population_records": 0})
        ),
        "check-record",
        str(r),
        "--id",
        "101",
    ][2:],
    "the signals hold 6 models and 0 population records but results.json describes 10",
)
for _given in ('["abc"]', "[1.5]", "[[1]]"):
    add(
        f"red-team/reference-set-{_given}",
        lambda t, g=_given: _reference_set(t, g),
        "reference.reference_set",
    )


@case("red-team/slice-of-bytes-not-utf8", "not UTF-8")
def _bytes_slice(tmp: Path) -> list[str]:
    rng = np.random.default_rng(0)
    np.savez(
        tmp / "o.npz",
        logits=rng.normal(size=(40, 2)),
        label=rng.integers(0, 2, 40),
        member=np.arange(40) % 2,
        s=np.array([b"\xff\xfe", b"ok"] * 20),
    )
    return ["attack", str(tmp / "o.npz"), "--slices", "s"]


@case("red-team/signals-meta-nested-past-reason", "nested more than 32")
def _deep_meta(tmp: Path) -> list[str]:
    res = _signals_folder(tmp)
    info: dict = {}
    node = info
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    with np.load(res / "signals" / "signals.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["miaudit"]))
    meta["info"] = {"recipe": info}
    arrays["miaudit"] = np.asarray(json.dumps(meta))
    np.savez(tmp / "deep.npz", **arrays)
    return ["audit", "--signals", str(tmp / "deep.npz"), "--out", str(tmp / "new")]


REPORT = {
    "no-such-folder": (lambda t: ["report", str(t / "nope")], "nope"),
    "folder-without-results": (
        lambda t: [(t / "res").mkdir(), "report", str(t / "res")][1:],
        "results",
    ),
    "results-not-json": (
        lambda t: [
            (t / "res").mkdir(),
            (t / "res" / "results.json").write_text("{oops"),
            "report",
            str(t / "res"),
        ][2:],
        "results",
    ),
    "results-a-list": (
        lambda t: [
            (t / "res").mkdir(),
            (t / "res" / "results.json").write_text("[]"),
            "report",
            str(t / "res"),
        ][2:],
        "results",
    ),
    "results-wrong-schema": (
        lambda t: [
            (t / "res").mkdir(),
            (t / "res" / "results.json").write_text('{"schema": "x"}'),
            "report",
            str(t / "res"),
        ][2:],
        "results",
    ),
}
for _name, (_b, _expect) in REPORT.items():
    add(f"report/{_name}", _b, _expect)


# --- audit --signals: a store trained elsewhere, its settings, its options ------------------------------


def _raw_signals(tmp: Path, **over: object) -> Path:
    """A valid signals .npz (6 models, each record in 3 of them, 20 population records), with
    arrays replaced or removed (None) as given: written with numpy, so nothing checks them."""
    rng = np.random.default_rng(0)
    k, n = 6, 80
    pop = np.zeros(n, dtype=bool)
    pop[:20] = True
    keep = (rng.random((k, n)).argsort(axis=0) < 3) & ~pop
    y = rng.integers(0, 3, n)
    arrays: dict[str, object] = {
        "logits": (rng.normal(size=(k, n, 3)) + 2.0 * keep[..., None]).astype(np.float32),
        "label": y,
        "keep": keep,
        "population": pop,
        "record_id": np.arange(n),
    }
    for name, value in over.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value(arrays) if callable(value) else value
    path = tmp / "signals.npz"
    np.savez(path, **arrays)
    return path


def _nan_logits(a: dict) -> np.ndarray:
    lg = np.array(a["logits"])
    lg[2, 30, 1] = np.nan
    return lg


def _huge_logits(a: dict) -> np.ndarray:
    lg = np.array(a["logits"], dtype=np.float64)
    lg[2, 30, 1] = 1e39  # finite, but inf as float32 (a RuntimeWarning, then "NaN or inf")
    return lg


def _all_in(a: dict) -> np.ndarray:
    keep = np.array(a["keep"])
    keep[:, 40] = True
    return keep


def _signals_case(opts: list[str], *, config: str | None = None, **over: object) -> Build:
    def build(tmp: Path) -> list[str]:
        store = _raw_signals(tmp, **over)
        argv = ["audit", "--signals", str(store), "--out", str(tmp / "out"), *opts]
        if config is not None:
            (tmp / "s.toml").write_text(config)
            argv.insert(1, str(tmp / "s.toml"))
        return argv

    return build


SIGNALS_AUDIT = {
    "no-such-file": (
        lambda t: ["audit", "--signals", str(t / "nope.npz"), "--out", str(t / "out")],
        "signals",
    ),
    "nan-logits": (_signals_case([], logits=_nan_logits), "logits"),
    "logits-beyond-float32": (
        _signals_case([], logits=_huge_logits),
        "logits: value 1e+39 at index (2, 30, 1) does not fit float32",
    ),
    "logits-2d": (_signals_case([], logits=lambda a: a["logits"][0]), "logits"),
    "keep-wrong-shape": (_signals_case([], keep=lambda a: a["keep"][:, :-1]), "keep"),
    "keep-missing": (_signals_case([], keep=None), "keep"),
    "record-with-no-out-model": (_signals_case([], keep=_all_in), "keep"),
    "no-population": (_signals_case([], population=None), "population"),
    "label-out-of-range": (_signals_case([], label=lambda a: a["label"] + 3), "label"),
    "references-a-word": (_signals_case(["--references", "many"]), "--references"),
    "references-zero": (_signals_case(["--references", "0"]), "references"),
    "k-pairs-without-pairs": (_signals_case(["--references", "2"]), "references"),
    "reference-list-without-target": (_signals_case(["--references", "1,2"]), "references"),
    "reference-is-the-target": (
        _signals_case(["--target", "1", "--references", "1,2"]),
        "references",
    ),
    "target-out-of-range": (_signals_case(["--target", "6"]), "target"),
    "target-negative": (_signals_case(["--target", "-1"]), "--target"),
    "unknown-attack": (_signals_case(["--attacks", "lira,bogus"]), "audit.attacks"),
    "resamples-zero": (_signals_case(["--resamples", "0"]), "--resamples"),
    "negative-seed": (_signals_case(["--seed", "-3"]), "--seed"),
    "config-with-data": (
        _signals_case([], config='[data]\ndataset = "digits"\n'),
        "data: an audit of signals",
    ),
    "config-unknown-field": (_signals_case([], config="[audit]\nrefrences = 2\n"), "refrences"),
    "config-bad-references": (_signals_case([], config="[audit]\nreferences = 0\n"), "references"),
    "with-executor": (_signals_case(["--executor", "local"]), "--signals"),
    "target-without-signals": (
        lambda t: ["audit", "c.toml", "--out", str(t / "out"), "--target", "1"],
        "--target",
    ),
    "out-is-a-file": (
        lambda t: [
            (t / "out").write_text("x"),
            *_signals_case([])(t),
        ][1:],
        "--out",
    ),
}
for _name, (_b, _expect) in SIGNALS_AUDIT.items():
    add(f"audit-signals/{_name}", _b, _expect)


# --- configs: defects × the four commands that read one --------------------------------------------------

BASE = {
    "seed": 1,
    "data": {"dataset": "digits"},
    "model": {"kind": "torch-mlp", "hidden": [8], "epochs": 1},
    "plan": {"pool_fraction": 0.5},
}


def _set(cfg: dict, dotted: str, value: object) -> dict:
    out = json.loads(json.dumps(cfg))
    *path, last = dotted.split(".")
    node = out
    for p in path:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return out


_DELETE = object()
CONFIG_DEFECTS: dict[str, tuple[str, object, str]] = {
    # name: (field, value, expected text)
    "lr-inf": ("model.lr", float("inf"), "model.lr"),
    "lr-nan": ("model.lr", float("nan"), "model.lr"),
    "weight-decay-inf": ("model.weight_decay", float("inf"), "model.weight_decay"),
    "pool-fraction-nan": ("plan.pool_fraction", float("nan"), "plan.pool_fraction"),
    "pool-fraction-above-1": ("plan.pool_fraction", 1.5, "plan.pool_fraction"),
    "epochs-negative": ("model.epochs", -1, "model.epochs"),
    "epochs-a-string": ("model.epochs", "many", "model.epochs"),
    "hidden-zero": ("model.hidden", [0], "model.hidden"),
    "hidden-absurd": ("model.hidden", [1_000_000_000], "model.hidden"),
    "hidden-not-a-list": ("model.hidden", "big", "model.hidden"),
    "unknown-model-kind": ("model.kind", "telepathy", "model"),
    "unknown-model-field": ("model.dropout_rate", 0.5, "model"),
    "unknown-dataset": ("data.dataset", "nonexistent", "data"),
    "data-path-missing": ("data", {"path": "missing.parquet", "label": "y"}, "missing.parquet"),
    "negative-seed": ("seed", -5, "seed"),
    "seed-a-float": ("seed", 1.5, "seed"),
    "unknown-top-level": ("colour", "blue", "colour"),
    "workers-negative": ("engine.workers", -1, "engine.workers"),
    "threads-zero": ("engine.threads", 0, "engine.threads"),
    "address-without-ray": ("engine.address", "127.0.0.1:1", "engine.address"),
    "unreachable-ray": ("engine", {"executor": "ray", "address": "127.0.0.1:1"}, "engine.address"),
    "ray-address-malformed": (
        "engine",
        {"executor": "ray", "address": "nowhere"},
        "engine.address",
    ),
    "batch-size-zero": ("model.batch_size", 0, "model.batch_size"),
    "bad-sklearn-params": (
        "model",
        {
            "kind": "sklearn",
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": -3},
        },
        "model.",
    ),
    "max-records-negative": ("data.max_records", -10, "data.max_records"),
}
TRAIN_ONLY = {
    "models-absurd": ("plan.models", 1_000_000_000, "plan.models"),
    "models-float-inf": ("plan.models", float("inf"), "plan.models"),
}
AUDIT_ONLY = {
    "plan-models-in-an-audit": ("plan.models", 4, "plan.models"),
    "references-absurd": ("audit.references", 500_000_000, "audit.references"),
    "unknown-attack": ("audit.attacks", ["loss", "telepathy"], "telepathy"),
    "references-zero": ("audit.references", 0, "audit.references"),
}
COMMANDS = {
    "train": lambda cfg, t: ["train", str(cfg), "--out", str(t / "out")],
    "audit": lambda cfg, t: ["audit", str(cfg), "--out", str(t / "out")],
    "tradeoff": lambda cfg, t: [
        "tradeoff",
        str(cfg),
        "--out",
        str(t / "out"),
        "--epsilons",
        "",
        "--weight-decays",
        "",
        "--no-early-stopping",
        "--policies",
        "label-only",
    ],
    "dp-audit": lambda cfg, t: ["dp-audit", str(cfg), "--out", str(t / "out")],
}


def _config_case(command: str, raw: dict, expect_name: str) -> Build:
    def build(tmp: Path) -> list[str]:
        cfg = (
            raw
            if command == "train"
            else _set(raw, "audit.references", raw.get("audit", {}).get("references", 1))
        )
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        return COMMANDS[command](path, tmp)

    return build


RAY = (
    "unreachable-ray",
    "ray-address-malformed",
)  # dp-audit trains in this process: no executor to reach
for _cmd in COMMANDS:
    defects = {**CONFIG_DEFECTS, **(TRAIN_ONLY if _cmd == "train" else AUDIT_ONLY)}
    if _cmd == "dp-audit":
        defects = {k: v for k, v in defects.items() if k not in RAY}
    for _name, (_field, _value, _expect) in defects.items():
        add(
            f"config/{_cmd}/{_name}",
            _config_case(_cmd, _set(BASE, _field, _value), _expect),
            _expect,
        )
    add(f"config/{_cmd}/missing-file", lambda t, c=_cmd: COMMANDS[c](t / "nope.toml", t), "config")
    add(
        f"config/{_cmd}/unknown-suffix",
        lambda t, c=_cmd: [(t / "c.ini").write_text("x"), *COMMANDS[c](t / "c.ini", t)][1:],
        "config",
    )
    add(
        f"config/{_cmd}/bad-toml",
        lambda t, c=_cmd: [(t / "c.toml").write_text("[data\nx = "), *COMMANDS[c](t / "c.toml", t)][
            1:
        ],
        "config",
    )
    add(
        f"config/{_cmd}/bad-yaml",
        lambda t, c=_cmd: [
            (t / "c.yaml").write_text("a: [1, 2\nb: {"),
            *COMMANDS[c](t / "c.yaml", t),
        ][1:],
        "config",
    )
    add(
        f"config/{_cmd}/yaml-list",
        lambda t, c=_cmd: [(t / "c.yaml").write_text("- 1\n- 2\n"), *COMMANDS[c](t / "c.yaml", t)][
            1:
        ],
        "config",
    )
    add(
        f"config/{_cmd}/toml-nan",
        lambda t, c=_cmd: [
            (t / "c.toml").write_text(
                'seed = 1\n[data]\ndataset = "digits"\n[model]\nlr = nan\n'
                + ("[audit]\nreferences = 1\n" if c != "train" else "")
            ),
            *COMMANDS[c](t / "c.toml", t),
        ][1:],
        "model.lr",
    )

add(
    "config/train/audit-table",  # a new user's walk: the lesson's config said "audit: unknown field"
    lambda t: [
        (t / "c.yaml").write_text(yaml.safe_dump({**BASE, "audit": {"references": 2}})),
        "train",
        str(t / "c.yaml"),
        "--out",
        str(t / "o"),
    ][1:],
    "an [audit] table is for `miaudit audit`",
)

add(
    "config/train/training-diverges",  # a finite but absurd lr: no verified cache unit of NaN logits is published
    lambda t: [
        (t / "c.yaml").write_text(
            yaml.safe_dump(_set(_set(BASE, "model.lr", 1e30), "data.max_records", 300))
        ),
        "train",
        str(t / "c.yaml"),
        "--out",
        str(t / "o"),
        "--workers",
        "0",
        "--no-progress",
    ][1:],
    "training diverged",
)

add(
    "config/train/dp-noise-diverges",  # DP noise is the cause: the message says so
    lambda t: [
        (t / "c.yaml").write_text(
            yaml.safe_dump(
                _set(
                    _set(
                        _set(BASE, "model.dp", {"noise_multiplier": 1e30}),
                        "model.optimizer",
                        "sgd",
                    ),
                    "model.lr",
                    1.0,
                )
            )
        ),
        "train",
        str(t / "c.yaml"),
        "--out",
        str(t / "o"),
        "--workers",
        "0",
        "--no-progress",
    ][1:],
    "noise may be too large",
)

# red team: the default trade-off of a scikit-learn recipe named a field nobody wrote
add(
    "tradeoff-options/epsilons-on-sklearn",
    lambda t: [
        (t / "c.yaml").write_text(
            yaml.safe_dump(
                _set(
                    _set(BASE, "audit.references", 1),
                    "model",
                    {"kind": "sklearn"},
                )
            )
        ),
        "tradeoff",
        str(t / "c.yaml"),
        "--out",
        str(t / "o"),
    ][1:],
    "--epsilons: DP-SGD variants need a torch-mlp or torch-cnn recipe (this one is sklearn)",
)


def _dp_config(t: Path, dp: dict, *command: str) -> list[str]:
    """``command`` on a config whose recipe has ``dp`` (its file written into ``t``)."""
    (t / "c.yaml").write_text(
        yaml.safe_dump(_set(_set(BASE, "audit.references", 1), "model.dp", dp))
    )
    return [command[0], str(t / "c.yaml"), *command[1:]]


# red team: clipping norm or σ beyond float32 were an internal error (exit 1) after the σ search;
# a δ the accountant cannot resolve, with σ given, too
DP_AUDIT_CLAIMS = {
    "dp-max-grad-norm-huge": (
        {"epsilon": 2.0, "max_grad_norm": 1e300},
        "model.dp.max_grad_norm: must fit float32",
    ),
    "dp-noise-multiplier-huge": (
        {"noise_multiplier": 1e300},
        "model.dp.noise_multiplier: must fit float32",
    ),
    "dp-delta-unresolved": (
        {"noise_multiplier": 1.0, "delta": 1e-30},
        "model.dp.delta: δ = 1e-30 is too small for the prv accountant",
    ),
}
for _name, (_dp, _expect) in DP_AUDIT_CLAIMS.items():
    add(
        f"config/dp-audit/{_name}",
        lambda t, d=_dp: _dp_config(t, d, "dp-audit", "--canaries", "100"),
        _expect,
    )

# DP claims refused before any training, nothing written (each was a hang or an internal error).
DP_CLAIMS = {
    "dp-epsilon-tiny": ({"epsilon": 1e-6}, "model.dp.epsilon: ε = 1e-06 is too small"),
    "dp-epsilon-huge": ({"epsilon": 1e9}, "model.dp.epsilon: no noise multiplier reaches"),
    "dp-delta-above-one-over-n": ({"epsilon": 1.0, "delta": 0.5}, "model.dp.delta"),
    # red team: blamed ε ("ε = 50 is too small") for a δ the PRV accountant cannot resolve
    "dp-delta-unresolved": (
        {"epsilon": 50.0, "delta": 1e-30},
        "model.dp.delta: δ = 1e-30 is too small for the prv accountant",
    ),
}
for _name, (_dp, _expect) in DP_CLAIMS.items():
    add(
        f"config/audit/{_name}",
        lambda t, d=_dp: _dp_config(t, d, "audit", "--out", str(t / "o")),
        _expect,
    )

TRADEOFF_OPTIONS = {
    "negative-epsilon": (["--epsilons=-1"], "--epsilons"),
    "epsilon-inf": (["--epsilons", "inf"], "--epsilons"),
    "epsilons-not-numbers": (["--epsilons", "a,b"], "--epsilons"),
    "negative-weight-decay": (["--weight-decays=-0.1"], "--weight-decays"),
    "unknown-policy": (["--policies", "bogus"], "--policies"),
    "negative-noise-sigma": (["--noise-sigma", "-1"], "--noise-sigma"),
    "noise-sigma-nan": (["--noise-sigma", "nan"], "--noise-sigma"),
    "delta-above-1": (["--delta", "2"], "--delta"),
    # refused before the baseline trains (it was refused after, leaving a half-written folder)
    "epsilon-tiny": (
        ["--epsilons", "1e-6"],
        "--epsilons: variant dp-eps1e-06: ε = 1e-06 is too small",
    ),
    "delta-above-one-over-n": (["--epsilons", "1", "--delta", "0.01"], "--delta: variant dp-eps1"),
    "delta-unresolved": (["--epsilons", "1", "--delta", "1e-30"], "--delta: variant dp-eps1"),
    "unknown-accountant": (["--accountant", "moments"], "--accountant"),
    "zero-policy-targets": (["--policy-targets", "0"], "--policy-targets"),
    "dp-audit-file-missing": (["--dp-audit", "nope.json"], "--dp-audit"),
    "dp-audit-file-not-json": (["--dp-audit", "<garbage>"], "--dp-audit"),
    "dp-audit-file-wrong-fields": (["--dp-audit", "<wrong>"], "--dp-audit"),
    # red team: duplicates collided in "variants: variant names must be unique" or ran twice,
    # and empty items were dropped silently
    "duplicate-epsilons": (["--epsilons", "1,1.0000001"], "--epsilons: lists 1 twice"),
    "duplicate-weight-decays": (["--weight-decays", "0.001,1e-3"], "--weight-decays"),
    "duplicate-policies": (["--policies", "top-1,TOP-1"], "--policies: lists 'top-1' twice"),
    "empty-epsilon-item": (["--epsilons", "1,,2"], "--epsilons: has an empty item"),
    "blank-policies": (["--policies", " "], "--policies: has an empty item"),
}


def _tradeoff_case(opts: list[str]) -> Build:
    def build(tmp: Path) -> list[str]:
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(_set(BASE, "audit.references", 1)), encoding="utf-8")
        (tmp / "garbage.json").write_text("{oops")
        (tmp / "wrong.json").write_text('{"claimed_epsilon": 1.0}')
        fixed = [
            str(tmp / "garbage.json")
            if o == "<garbage>"
            else str(tmp / "wrong.json")
            if o == "<wrong>"
            else str(tmp / o)
            if o == "nope.json"
            else o
            for o in opts
        ]
        return ["tradeoff", str(path), "--out", str(tmp / "out"), *fixed]

    return build


for _name, (_opts, _expect) in TRADEOFF_OPTIONS.items():
    add(f"tradeoff-options/{_name}", _tradeoff_case(_opts), _expect)

DP_AUDIT_OPTIONS = {
    "zero-canaries": (["--canaries", "0"], "canaries"),
    "negative-k-plus": (["--k-plus", "-1"], "k_plus"),
    "zero-runs": (["--runs", "0"], "runs"),
    "significance-above-1": (["--significance", "1.5"], "significance"),
    # red team: at 0.999 a correct recipe FAILED (exit 1) with a meaningless bound
    "significance-meaningless": (["--significance", "0.5"], "--significance: must lie in (0, 0.2]"),
    "unknown-canary-kind": (["--canary-kind", "magic"], "--canary-kind"),
    "negative-seed": (["--seed", "-1"], "seed"),
}
for _name, (_opts, _expect) in DP_AUDIT_OPTIONS.items():
    add(
        f"dp-audit-options/{_name}",
        lambda t, o=_opts: [
            (t / "c.yaml").write_text(yaml.safe_dump(_set(BASE, "audit.references", 1))),
            "dp-audit",
            str(t / "c.yaml"),
            *o,
        ][1:],
        _expect,
    )

TRAIN_OPTIONS = {
    "negative-workers": (["--workers", "-1"], "workers"),
    "zero-threads": (["--threads", "0"], "threads"),
    "unknown-executor": (["--executor", "slurm"], "executor"),
    "cache-under-a-file": (["--cache", "<file>/models"], "cache"),
}
for _name, (_opts, _expect) in TRAIN_OPTIONS.items():
    add(
        f"train-options/{_name}",
        lambda t, o=_opts: [
            (t / "c.yaml").write_text(yaml.safe_dump(BASE)),
            (t / "f").write_text("x"),
            "train",
            str(t / "c.yaml"),
            "--out",
            str(t / "out"),
            *[x.replace("<file>", str(t / "f")) for x in o],
        ][2:],
        _expect,
    )
add(
    "audit-options/unknown-executor",
    lambda t: [
        (t / "c.yaml").write_text(yaml.safe_dump(_set(BASE, "audit.references", 1))),
        "audit",
        str(t / "c.yaml"),
        "--out",
        str(t / "o"),
        "--executor",
        "slurm",
    ][1:],
    "executor",
)
# A rule that cannot parse, and (a learner's walk) rules on what a reference audit does not
# report: accepted, then refused after the whole audit with its files written.
AUDIT_FAIL_ON = {
    "bad-fail-on": "x",
    "fail-on-epsilon-not-reported": "epsilon.lower>1",
    "fail-on-fpr-not-reported": "tpr@5%fpr.upper>0.5",
}
for _name, _rule in AUDIT_FAIL_ON.items():
    add(
        f"audit-options/{_name}",
        lambda t, r=_rule: [
            (t / "c.yaml").write_text(yaml.safe_dump(_set(BASE, "audit.references", 1))),
            "audit",
            str(t / "c.yaml"),
            "--out",
            str(t / "o"),
            "--fail-on",
            r,
        ][1:],
        "--fail-on",
    )
add(
    "audit-options/unreachable-address",
    lambda t: [
        (t / "c.yaml").write_text(yaml.safe_dump(_set(BASE, "audit.references", 1))),
        "audit",
        str(t / "c.yaml"),
        "--out",
        str(t / "o"),
        "--executor",
        "ray",
        "--address",
        "127.0.0.1:1",
    ][1:],
    "engine.address",
)
add(
    "demo/out-under-a-file",
    lambda t: [(t / "f").write_text("x"), "demo", "--outputs-only", "--out", str(t / "f" / "demo")][
        1:
    ],
    "--out",
)


# --- the service's commands ---------------------------------------------------------------------------------


def _db(t: Path) -> str:
    return f"sqlite:///{t}/guard.db"


def _empty_db(t: Path) -> None:
    from miaudit.serve import Store

    Store(_db(t)).close()


KEYS = {
    "unknown-role": (lambda t: ["keys", "create", "--role", "emperor", "--db", _db(t)], "--role"),
    "negative-budget": (
        lambda t: ["keys", "create", "--role", "public", "--budget", "-1", "--db", _db(t)],
        "--budget",
    ),
    "budget-not-a-number": (
        lambda t: ["keys", "create", "--role", "public", "--budget", "lots", "--db", _db(t)],
        "--budget",
    ),
    "zero-rate": (
        lambda t: ["keys", "create", "--role", "public", "--rate", "0", "--db", _db(t)],
        "--rate",
    ),
    "zero-window": (
        lambda t: [
            "keys",
            "create",
            "--role",
            "public",
            "--rate",
            "5",
            "--window",
            "0",
            "--db",
            _db(t),
        ],
        "--window",
    ),
    "unsupported-database": (
        lambda t: ["keys", "create", "--role", "admin", "--db", "mysql://u:pw@h/x"],
        "--db",
    ),
    "not-a-url": (lambda t: ["keys", "list", "--db", "::::"], "--db"),
    "in-memory-sqlite": (lambda t: ["keys", "list", "--db", "sqlite://"], "--db"),
    "not-a-sqlite-file": (
        lambda t: [(t / "x.db").write_text("hello"), "keys", "list", "--db", f"sqlite:///{t}/x.db"][
            1:
        ],
        "--db",
    ),
    "db-under-a-file": (
        lambda t: [(t / "f").write_text("x"), "keys", "list", "--db", f"sqlite:///{t}/f/guard.db"][
            1:
        ],
        "--db",
    ),
    "postgres-not-answering": (
        lambda t: ["keys", "list", "--db", "postgresql://u@127.0.0.1:1/x"],
        "--db",
    ),
    "secret-file-unwritable": (
        lambda t: [
            (t / "f").write_text("x"),
            "keys",
            "create",
            "--role",
            "admin",
            "--db",
            _db(t),
            "--secret-file",
            str(t / "f" / "s"),
        ][1:],
        "--secret-file",
    ),
    "secret-file-too-short": (
        lambda t: [
            (t / "s").write_bytes(b"short"),
            (t / "s").chmod(0o600),
            "keys",
            "create",
            "--role",
            "admin",
            "--db",
            _db(t),
            "--secret-file",
            str(t / "s"),
        ][2:],
        "--secret-file",
    ),
    "roles-file-missing": (
        lambda t: [
            "keys",
            "create",
            "--role",
            "admin",
            "--roles",
            str(t / "r.toml"),
            "--db",
            _db(t),
        ],
        "--roles",
    ),
    "roles-file-bad-toml": (
        lambda t: [
            (t / "r.toml").write_text("[roles"),
            "keys",
            "create",
            "--role",
            "admin",
            "--roles",
            str(t / "r.toml"),
            "--db",
            _db(t),
        ][1:],
        "--roles",
    ),
    "roles-bad-policy": (
        lambda t: [
            (t / "r.toml").write_text('[roles.x]\npolicy = "top-0"\n'),
            "keys",
            "create",
            "--role",
            "x",
            "--roles",
            str(t / "r.toml"),
            "--db",
            _db(t),
        ][1:],
        "roles.x.policy",
    ),
    "roles-unknown-endpoint": (
        lambda t: [
            (t / "r.toml").write_text('[roles.x]\npolicy = "full"\nendpoints = ["root"]\n'),
            "keys",
            "create",
            "--role",
            "x",
            "--roles",
            str(t / "r.toml"),
            "--db",
            _db(t),
        ][1:],
        "roles.x.endpoints",
    ),
    "revoke-no-database": (
        lambda t: ["keys", "revoke", "ffffffffffffffff", "--db", _db(t)],
        "--db",
    ),
    "budget-no-database": (
        lambda t: ["keys", "budget", "ffffffffffffffff", "--budget", "5", "--db", _db(t)],
        "--db",
    ),
    "list-no-database": (lambda t: ["keys", "list", "--db", _db(t)], "--db"),
    "revoke-unknown-key": (
        lambda t: [_empty_db(t), "keys", "revoke", "ffffffffffffffff", "--db", _db(t)][1:],
        "key_id",
    ),
    "budget-unknown-key": (
        lambda t: [
            _empty_db(t),
            "keys",
            "budget",
            "ffffffffffffffff",
            "--budget",
            "5",
            "--db",
            _db(t),
        ][1:],
        "key_id",
    ),
    "budget-negative": (
        lambda t: ["keys", "budget", "ffffffffffffffff", "--budget", "-5", "--db", _db(t)],
        "--budget",
    ),
    "alerts-zero-limit": (lambda t: ["alerts", "--limit", "0", "--db", _db(t)], "--limit"),
    "alerts-bad-db": (lambda t: ["alerts", "--db", "mysql://h/x"], "--db"),
}
for _name, (_b, _expect) in KEYS.items():
    add(f"keys/{_name}", _b, _expect)


def _unit_with_metadata(t: Path, metadata: dict[str, str]) -> Path:
    from safetensors.numpy import save_file

    unit = t / "unit"
    unit.mkdir()
    tensors = {
        "layer0.weight": np.ones((1, 3, 2), np.float32),
        "layer0.bias": np.zeros((1, 1, 2), np.float32),
        "preprocess.scale": np.ones((1, 3), np.float32),
        "preprocess.shift": np.zeros((1, 3), np.float32),
    }
    save_file(tensors, str(unit / "weights.safetensors"), metadata=metadata)
    return unit


SERVE = {
    "model-missing": (
        lambda t: ["serve", "--model", str(t / "m.skops"), "--db", _db(t)],
        "--model",
    ),
    "model-not-a-model": (
        lambda t: [
            (t / "m.txt").write_text("x"),
            "serve",
            "--model",
            str(t / "m.txt"),
            "--db",
            _db(t),
        ][1:],
        "--model",
    ),
    "model-folder-empty": (
        lambda t: [(t / "unit").mkdir(), "serve", "--model", str(t / "unit"), "--db", _db(t)][1:],
        "--model",
    ),
    "skops-garbage": (
        lambda t: [
            (t / "m.skops").write_bytes(b"PK\x03\x04junk"),
            "serve",
            "--model",
            str(t / "m.skops"),
            "--db",
            _db(t),
        ][1:],
        "m.skops",
    ),
    "safetensors-garbage": (
        lambda t: [
            (t / "unit").mkdir(),
            (t / "unit" / "weights.safetensors").write_bytes(
                b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}"
            ),
            "serve",
            "--model",
            str(t / "unit"),
            "--db",
            _db(t),
        ][2:],
        "--model",
    ),
    "safetensors-metadata-not-json": (
        lambda t: [
            "serve",
            "--model",
            str(_unit_with_metadata(t, {"models": "[0"})),
            "--db",
            _db(t),
        ],
        "'models'",
    ),
    "safetensors-models-not-indices": (
        lambda t: [
            "serve",
            "--model",
            str(_unit_with_metadata(t, {"models": '["a"]'})),
            "--db",
            _db(t),
        ],
        "'models'",
    ),
    "safetensors-recipe-not-mlp": (
        lambda t: [
            "serve",
            "--model",
            str(_unit_with_metadata(t, {"recipe": '{"kind": "torch-cnn"}'})),
            "--db",
            _db(t),
        ],
        "torch-cnn",
    ),
    "model-index-not-in-unit": (
        lambda t: [
            "serve",
            "--model",
            str(_unit_with_metadata(t, {"models": "[0]"})),
            "--model-index",
            "3",
            "--db",
            _db(t),
        ],
        "--model-index",
    ),
    "negative-model-index": (
        lambda t: ["serve", "--model", str(t / "m.skops"), "--model-index", "-1", "--db", _db(t)],
        "--model-index",
    ),
    "model-and-upstream": (
        lambda t: [
            "serve",
            "--model",
            str(t / "m.skops"),
            "--upstream",
            "http://127.0.0.1:1/",
            "--n-features",
            "3",
            "--db",
            _db(t),
        ],
        "--model",
    ),
    "neither-model-nor-upstream": (lambda t: ["serve", "--db", _db(t)], "--model"),
    "zero-workers": (
        lambda t: ["serve", "--upstream", "http://127.0.0.1:1/", "--workers", "0", "--db", _db(t)],
        "--workers",
    ),
    "port-out-of-range": (
        lambda t: ["serve", "--upstream", "http://127.0.0.1:1/", "--port", "70000", "--db", _db(t)],
        "--port",
    ),
    "zero-max-batch": (
        lambda t: [
            "serve",
            "--upstream",
            "http://127.0.0.1:1/",
            "--n-features",
            "3",
            "--max-batch",
            "0",
            "--db",
            _db(t),
        ],
        "--max-batch",
    ),
    "bad-roles-file": (
        lambda t: [
            (t / "r.toml").write_text("x = "),
            "serve",
            "--upstream",
            "http://127.0.0.1:1/",
            "--n-features",
            "3",
            "--roles",
            str(t / "r.toml"),
            "--db",
            _db(t),
        ][1:],
        "--roles",
    ),
    "bad-sqlite-sync": (
        lambda t: [
            "serve",
            "--upstream",
            "http://127.0.0.1:1/",
            "--n-features",
            "3",
            "--sqlite-sync",
            "OFF",
            "--db",
            _db(t),
            "--secret-file",
            str(t / "s"),
        ],
        "sqlite",
    ),
    "db-not-a-database": (
        lambda t: [
            (t / "x.db").write_text("hello"),
            (t / "s").write_bytes(bytes(range(32))),
            (t / "s").chmod(0o600),
            "serve",
            "--upstream",
            "http://127.0.0.1:1/",
            "--n-features",
            "3",
            "--db",
            f"sqlite:///{t}/x.db",
            "--secret-file",
            str(t / "s"),
        ][3:],
        "--db",
    ),
    "non-sqlite-db-without-secret": (
        lambda t: [
            "serve",
            "--upstream",
            "http://127.0.0.1:1/",
            "--n-features",
            "3",
            "--db",
            "postgresql://u@127.0.0.1:1/x",
        ],
        "--secret-file",
    ),
}
for _name, (_b, _expect) in SERVE.items():
    add(f"serve/{_name}", _b, _expect)


# --- the test -------------------------------------------------------------------------------------------------


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))  # folders too: a refused run leaves no empty output folder


def test_the_suite_is_large() -> None:
    assert len(CASES) >= 200, len(CASES)


def test_input_errors_cross_process_boundaries() -> None:
    import pickle

    from miaudit.errors import InputError

    err = pickle.loads(pickle.dumps(InputError("model.lr", "must be finite")))
    assert (err.field, err.problem, str(err)) == (
        "model.lr",
        "must be finite",
        "model.lr: must be finite",
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, good_outputs, capsys, monkeypatch) -> None:
    import uvicorn

    monkeypatch.delenv("MIAUDIT_SERVE_SECRET", raising=False)
    monkeypatch.setenv("MIAUDIT_RAY_TIMEOUT_S", "2")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server was started"))
    monkeypatch.chdir(tmp_path)
    build, expect = CASES[name]
    argv = [str(good_outputs) if a == GOOD else a for a in build(tmp_path)]
    before = _files(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    cap = capsys.readouterr()
    assert exc.value.code == 2, (cap.err, cap.out[-500:])
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    assert "Traceback" not in cap.err + cap.out
    assert expect in lines[0], (expect, lines[0])
    assert _files(tmp_path) - before == set(), sorted(map(str, _files(tmp_path) - before))
