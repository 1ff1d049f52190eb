"""Config files are read strictly: YAML without aliases or repeated keys (red team: an alias
bomb hung every command, a self-referring alias was an internal error, a repeated key silently
replaced the first)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from miaudit.audit import load_audit_config
from miaudit.engine import load_config, read_config_file
from miaudit.errors import InputError

BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    + ["data: {name: digits}"]
)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (BOMB, r"aliases \(\*name\) are not allowed"),
        ("x: &x [*x]\n", "aliases"),
        ("data: {name: digits}\ndata: {name: adult}\n", "key 'data' is given twice"),
        ("data: {name: digits, name: adult}\n", "key 'name' is given twice"),
    ],
)
@pytest.mark.parametrize("load", [load_config, load_audit_config])
def test_yaml_aliases_and_repeated_keys_are_refused_at_once(
    tmp_path: Path, text: str, match: str, load: object
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(InputError, match=match) as info:
        load(path)  # type: ignore[operator]
    assert info.value.field == "config" and "\n" not in str(info.value)
    assert time.perf_counter() - started < 5  # the bomb hung past 90 s


def test_anchors_alone_and_ordinary_yaml_still_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: &d {name: digits}\nseed: 3\n")
    assert read_config_file(path) == {"data": {"name": "digits"}, "seed": 3}


def test_toml_repeated_keys_are_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("seed = 1\nseed = 2\n")
    with pytest.raises(InputError, match=r"cannot parse c\.toml"):
        read_config_file(path)


def test_encodings_sizes_and_a_byte_order_mark(tmp_path: Path) -> None:
    """Red team: a Latin-1 config was an internal error (UnicodeDecodeError), a 2 MB YAML list
    took 28 s and 890 MB, and a TOML file with a byte-order mark was refused."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("data: {dataset: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"cannot parse latin\.yaml"):
        read_config_file(latin)
    big = tmp_path / "big.yaml"
    big.write_text("x: [" + "1, " * 2_000_000 + "1]\n")
    with pytest.raises(InputError, match="larger than 4 MiB"):
        read_config_file(big)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbfseed = 3\n")
    assert read_config_file(bom) == {"seed": 3}
