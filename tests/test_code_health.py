"""Code-health rules that ruff and mypy don't check: short functions in src.

A function in src longer than :data:`MAX_LINES` (from its ``def`` or first decorator to its last
line, docstring included) must say why on the line above it, in a comment starting ``# Long:``.
Splitting it into named steps is almost always the better answer.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "miaudit"
MAX_LINES = 60


def _long_functions_without_reason(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            length = node.end_lineno - start + 1
            above = lines[start - 2].strip() if start >= 2 else ""
            # The reason may run over several comment lines; its first says "# Long:".
            block = start - 2
            while block > 0 and lines[block - 1].strip().startswith("#"):
                block -= 1
            reason = any(
                lines[i].strip().lower().startswith("# long:") for i in range(block, start - 1)
            )
            if length > MAX_LINES and not (reason and above.startswith("#")):
                found.append(
                    f"{path.relative_to(src.parent)}:{node.lineno} {node.name} ({length} lines)"
                )
    return found


def test_no_long_function_without_a_reason() -> None:
    found = _long_functions_without_reason()
    assert not found, (
        f"functions over {MAX_LINES} lines with no '# Long: why' comment above them:\n"
        + "\n".join(found)
    )


def test_the_rule_sees_a_long_function(tmp_path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    pkg = tmp_path / "miaudit"
    pkg.mkdir()
    (pkg / "a.py").write_text(f"def f():\n{body}\n\n\n# Long: a table of cases\ndef g():\n{body}\n")
    found = _long_functions_without_reason(pkg)
    assert len(found) == 1 and " f (" in found[0]
