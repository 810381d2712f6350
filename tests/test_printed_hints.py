"""The commands our programs print for a person to run (hints in messages, banners and
errors) run as printed from a fresh clone's shell, where neither ``python`` nor ``temporal``
is the project's: ``make ...``, ``uv run ...`` or ``.venv/bin/...``, never a bare
``python -m ...`` or ``temporal ...``. The README's own commands and the hints the commands
it runs print are run by scripts/check_readme_commands.py (tests/test_readme_commands.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from settings import ROOT

# Where the printed strings live: make run, the CLI and the API, the worker, the codec server.
SOURCES = sorted(
    [*(ROOT / "devstack").rglob("*.py"), *(ROOT / "starter").rglob("*.py"), ROOT / "worker.py"]
)
# A program the shell would find as the system's, or not at all.
BARE = re.compile(
    r"(?<![\w/.-])(python3? -m \w|temporal (?:operator|workflow|worker|server|schedule)\b)"
)
RUNNABLE_BEFORE = re.compile(r"(?:\buv run |\.venv/bin/)$")


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _not_printed(tree: ast.Module) -> set[int]:
    """argparse's ``prog=`` names the program in usage lines; it is not a hint to run."""
    return {
        id(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "prog"
    }


def bare_commands(source: str) -> list[str]:
    """Each printed string of ``source`` with a command a fresh shell cannot run as printed."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _not_printed(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if id(node) in skip:
            continue
        for match in BARE.finditer(node.value):
            if not RUNNABLE_BEFORE.search(node.value[: match.start()]):
                found.append(f"line {node.lineno}: {node.value.strip()!r}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_printed_commands_start_with_a_runnable_form(path: Path):
    assert bare_commands(path.read_text()) == []


def test_the_check_sees_a_bare_command_and_passes_runnable_ones():
    source = '''
"""Docstring: python -m starter demo (not printed)."""
import argparse
argparse.ArgumentParser(prog="python -m starter")
print("in a terminal: python -m starter report --journey x")
print(f"run `temporal operator search-attribute create --name {1}`")
print("ok: make mail SHOW=1, uv run python -m starter mail, .venv/bin/python -m starter x")
print("ok: ENVIRONMENT=development .venv/bin/temporal workflow show -w x")
'''
    assert [hit.split(":")[0] for hit in bare_commands(source)] == ["line 5", "line 6"]
