"""Write docs/config.md: the audit config reference, generated from the typed schema.

    .venv/bin/python scripts/config_reference.py [docs/config.md]

Every section, key, type, default and constraint comes from the pydantic models that validate a
config (``miaudit.audit.AuditConfig``), so the reference cannot drift from what is accepted;
tests/test_docs.py fails when the committed page is not what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from miaudit.audit import AuditConfig

HEADER = """# Config reference

Generated from the typed schema by `scripts/config_reference.py` (do not edit by hand). A config
is TOML or YAML; every key is optional unless marked required, and an unknown key is refused with
a one-line error naming it, as is a key given twice; YAML aliases (`*name`) are refused (an
alias bomb expands a small file into billions of values). `[model]` takes one of the recipe
kinds below, chosen by `kind`.
"""

BOUNDS = {
    "minimum": "≥ {}",
    "maximum": "≤ {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "minLength": "length ≥ {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
    "pattern": "matches `{}`",
}


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(p: dict[str, Any]) -> str:
    if "$ref" in p:
        return f"[{_ref_name(p['$ref'])}](#{_ref_name(p['$ref']).lower()})"
    if "const" in p:
        return f"`{json.dumps(p['const'])}`"
    if "enum" in p:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in p["enum"])
    for union in ("anyOf", "oneOf"):
        if union in p:
            return " \\| ".join(_type(q) for q in p[union])
    if p.get("type") == "array":
        return f"list of {_type(p.get('items', {}))}"
    if p.get("type") == "object":
        return "table"
    return str(p.get("type", "any"))


def _constraints(p: dict[str, Any]) -> str:
    parts = [fmt.format(p[k]) for k, fmt in BOUNDS.items() if k in p]
    for q in p.get("anyOf", []):
        parts += [fmt.format(q[k]) for k, fmt in BOUNDS.items() if k in q]
    return ", ".join(parts)


def _default(name: str, p: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "required"
    if "default" not in p:
        return ""
    value = json.dumps(p["default"], ensure_ascii=False)
    return f"`{value}`" if len(value) <= 40 else "(see the section)"


def _table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| key | type | default | constraints |", "|---|---|---|---|"]
    for name, p in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_type(p)} | {_default(name, p, required)} | {_constraints(p)} |"
        )
    return rows


def _description(schema: dict[str, Any]) -> str:
    return " ".join(schema.get("description", "").split())


def render() -> str:
    schema = AuditConfig.model_json_schema()
    out = [HEADER, "## The config file", "", _description(schema), "", *_table(schema), ""]
    for name, sub in sorted(schema.get("$defs", {}).items()):
        out += [f"## {name}", ""]
        if text := _description(sub):
            out += [text, ""]
        out += [*_table(sub), ""]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    path = Path(argv[0] if argv else "docs/config.md")
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
