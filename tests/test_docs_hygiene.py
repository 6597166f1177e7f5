"""The code and its documents stand on their own: no pointers to a specification outside the
repository, short module docstrings, and measured figures only in docs/performance.md."""
from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION_SIGN = "\u00a7"
SPEC_PATH = "shared" + "/spec"
MAX_MODULE_DOCSTRING_LINES = 10
# A timing quoted from one machine: "0.12 ms", "~5 ms", "3 µs", "~1.6 s".
FIGURE = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|µs)\b|~\s?\d+(?:\.\d+)?\s?s\b")


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for top in ("autoexec", "tests", "bench"):
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return files


def _python_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "autoexec").rglob("*.py") if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=None)
def _parsed(path: Path) -> tuple[str, ast.Module]:
    source = path.read_text(encoding="utf-8")
    return source, ast.parse(source)


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring of a Python module."""
    source, tree = _parsed(path)
    found = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                found.append((body[0].lineno, body[0].value.value))
    return found


def test_no_pointer_to_the_outside_specification() -> None:
    offenders = []
    for path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for no, line in enumerate(text.splitlines(), 1):
            if SECTION_SIGN in line or SPEC_PATH in line:
                offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not offenders, "state the fact in plain words instead:\n" + "\n".join(offenders)


def test_module_docstrings_are_short() -> None:
    offenders = []
    for path in _python_modules():
        doc = ast.get_docstring(_parsed(path)[1], clean=False) or ""
        lines = doc.strip("\n").count("\n") + 1
        if lines > MAX_MODULE_DOCSTRING_LINES:
            offenders.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not offenders, ("say why in a few lines; design notes go to docs/design.md, figures to "
                           "docs/performance.md:\n" + "\n".join(offenders))


def test_no_measured_figures_in_code_prose() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line}: {FIGURE.search(text).group(0)}"  # type: ignore[union-attr]
                 for path in _python_modules() for line, text in _prose(path) if FIGURE.search(text)]
    assert not offenders, "figures from one machine belong in docs/performance.md:\n" + "\n".join(offenders)
