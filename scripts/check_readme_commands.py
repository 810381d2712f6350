"""Run the README's shell commands as printed, against a running stack (`make run`).

    uv run python scripts/check_readme_commands.py [--list] [--skip REGEX ...]

Every fenced ``sh`` block of README.md is split into commands (lines joined until bash
reads a complete command: continuations, multi-line JSON bodies, ``for ...; do ... done``),
and so are inline spans that start like a command (`` `temporal ...` ``,
`` `uv run ...` ``, `` `make ...` ``, `` `.venv/bin/...` ``). Each runs in ``bash`` from the
repo root with the virtualenv *not* on PATH (as in a fresh clone's shell after ``make
setup``), in README order, so later commands see what earlier ones did (c-42 exists before
it is explained).

A command passes when it exits 0, or when it is an operator command (cancel, pause,
resume) that exits 1 with one ``error: nothing to ...`` line (the documented "nothing
matched"); it fails on any other exit code (2: refused as printed; 127: not found; 69: a
part of the stack is down) or a traceback. Not run, and listed with the reason: the
long-running targets (``make run|test|bench|faults|demo-report``), Docker, and commands with
``<placeholders>``. ``--skip REGEX`` skips more (the test skips what would touch other
tests' state).

The hints the commands print for a person to run next (`` `make ...` ``, ``(make mail
SHOW=3)``, ``in a terminal: ...``: ``make``, ``uv run`` or ``.venv/bin/...`` forms) run too,
right after the command that printed them, by the same rules; a command that prints a bare
``python -m ...`` or ``temporal ...`` (which a fresh shell cannot run) fails.

``CHECK_API_URL``, when set, replaces the README's ``http://127.0.0.1:8000`` (a stack on
another port), ``CHECK_CODEC_URL`` its codec server ``http://127.0.0.1:8089``. Exit code: 0
when every command run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_CODEC = "http://127.0.0.1:8089"
TIMEOUT = 180  # seconds per command (make demo waits up to a minute for its email)

# (pattern, why it is not run)
NOT_RUN = (
    (re.compile(r"\bmake (run|test|bench|faults|demo-report)\b"), "long-running; run by hand"),
    (re.compile(r"\bdocker(-compose)?\b"), "no Docker engine here (scripts/validate_compose.sh)"),
    (re.compile(r"\bpytest\b|record_histories"), "the tests and their recordings"),
    (re.compile(r"check_readme_commands"), "this checker itself"),
    (re.compile(r"<[a-z][a-z _-]*>"), "has a <placeholder> to fill in"),
    (re.compile(r"(^|\s)\.\.\.(\s|$)"), "an elided argument (...)"),
)
INLINE = re.compile(r"`((?:temporal|uv run|make|\.venv/bin/\S+) [^`]+)`")
ASSIGNMENTS = re.compile(r"(\w+=\S+;?\s*)+")
NOTHING_MATCHED = re.compile(r"python -m starter (cancel|pause|resume)\b")
# Hints in a command's output: in backticks, in parentheses, or after "in a terminal:".
_RUNNABLE = r"(?:[A-Z_]+=\S+ )*(?:make|uv run|\.venv/bin/\S+) "
HINTS = (
    re.compile(rf"`({_RUNNABLE}[^`\n]+)`"),
    re.compile(rf"\(({_RUNNABLE}[^()\n]+)\)"),
    re.compile(rf"in a terminal: ({_RUNNABLE}.+)$", re.MULTILINE),
)
# What a fresh shell runs as the system's program, or not at all (tests/test_printed_hints.py).
BARE = re.compile(
    r"(?<![\w/.-])(python3? -m \w|temporal (?:operator|workflow|worker|server|schedule)\b)"
)
RUNNABLE_BEFORE = re.compile(r"(?:\buv run |\.venv/bin/)$")


@dataclass
class Command:
    line: int
    text: str
    skip: str | None = None
    prelude: str = ""  # the block's variable assignments above it (K=...; API=...)
    hint_of: str = ""  # printed by this command, not written in the README


def _complete(text: str) -> bool:
    """Whether bash reads ``text`` as complete commands (no open quote, loop or ``\\``)."""
    if text.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n", "-c", text], capture_output=True).returncode == 0


def commands(readme: str) -> list[Command]:
    """The README's commands in order: fenced sh/bash blocks, then inline spans in place."""
    found: list[Command] = []
    fence: str | None = None
    pending: list[str] = []
    prelude = ""
    start = 0
    for n, line in enumerate(readme.splitlines(), 1):
        if line.lstrip().startswith("```"):  # also fences indented in a list item
            fence = None if fence is not None else line.lstrip()[3:].strip()
            prelude = ""
            continue
        if fence in ("sh", "bash", "shell"):
            if not pending:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                start = n
            pending.append(line)
            text = "\n".join(pending)
            if _complete(text):
                found.append(Command(start, text, prelude=prelude))
                if ASSIGNMENTS.fullmatch(text.strip()):
                    prelude += text.strip() + "\n"
                pending = []
        elif fence is None:
            for span in INLINE.findall(line):
                found.append(Command(n, span))
    return found


def _without_comment(text: str) -> str:
    """A one-line command less its trailing ``  # comment``."""
    return text if "\n" in text else re.split(r"\s+#\s", text, maxsplit=1)[0]


def hints(output: str) -> list[str]:
    """The commands ``output`` tells a person to run, in order."""
    found = sorted((m.start(), m.group(1).strip()) for p in HINTS for m in p.finditer(output))
    return list(dict.fromkeys(text for _, text in found))


def bare_commands(output: str) -> list[str]:
    """Commands in ``output`` that a fresh shell cannot run as printed (argparse's usage
    and error lines name the program, ``usage: python -m starter ...``: not a hint)."""
    found = []
    for m in BARE.finditer(output):
        line = output[output.rfind("\n", 0, m.start()) + 1 :].split("\n", 1)[0]
        if line.lstrip().startswith("usage:") or re.match(r"python3? -m [\w.]+: ", line):
            continue
        if not RUNNABLE_BEFORE.search(output[: m.start()]):
            found.append(output[m.start() : m.start() + 40].splitlines()[0])
    return found


def classify(
    cmds: list[Command], skips: list[re.Pattern[str]], seen: set[str] | None = None
) -> None:
    seen = set() if seen is None else seen
    for cmd in cmds:
        if _without_comment(cmd.text).strip() in seen:
            cmd.skip = "run above"
            continue
        seen.add(_without_comment(cmd.text).strip())
        for pattern, why in NOT_RUN:
            if pattern.search(_without_comment(cmd.text)):
                cmd.skip = why
                break
        else:
            if any(p.search(cmd.text) for p in skips):
                cmd.skip = "skipped by --skip"


def _env() -> dict[str, str]:
    """This process's environment without the virtualenv: a fresh shell in the clone."""
    env = dict(os.environ)
    venv = env.pop("VIRTUAL_ENV", None) or str(ROOT / ".venv")
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if p and not p.startswith(venv) and not p.startswith(str(ROOT / ".venv"))
    )
    return env


def run(cmd: Command, env: dict[str, str]) -> tuple[bool, str, str]:
    """Run one command; (passed, what it said in a few lines, all it printed)."""
    text = cmd.prelude + cmd.text
    if api := env.get("CHECK_API_URL"):
        text = text.replace(DEFAULT_API, api)
    if codec := env.get("CHECK_CODEC_URL"):
        text = text.replace(DEFAULT_CODEC, codec)
    try:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", text],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"did not end within {TIMEOUT} s", ""
    printed = done.stdout + done.stderr
    said = (done.stderr.strip() or done.stdout.strip()).splitlines()
    summary = f"exit {done.returncode}: " + (" | ".join(said[-3:]) if said else "(no output)")
    if "Traceback (most recent call last)" in printed:
        return False, summary, printed
    if bare := bare_commands(printed):
        return False, f"printed a command a fresh shell cannot run: {bare[0]!r}", printed
    if done.returncode == 0:
        return True, summary, printed
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    nothing = (
        done.returncode == 1
        and NOTHING_MATCHED.search(text) is not None
        and len(errors) == 1
        and errors[0].startswith("error: nothing to ")
    )
    return nothing, summary, printed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--list", action="store_true", help="list the commands; run nothing")
    p.add_argument("--skip", action="append", default=[], metavar="REGEX")
    args = p.parse_args(argv)
    cmds = commands(README.read_text())
    skips = [re.compile(s) for s in args.skip]
    seen: set[str] = set()
    classify(cmds, skips, seen)
    env = _env()
    failed = 0
    todo = list(cmds)
    while todo:
        cmd = todo.pop(0)
        first = cmd.text.splitlines()[0]
        shown = first + (" ..." if "\n" in cmd.text else "")
        where = f"README:{cmd.line}: " + (f"hint of {cmd.hint_of}: " if cmd.hint_of else "")
        if cmd.skip or args.list:
            print(f"{where}{'not run: ' + cmd.skip if cmd.skip else 'run'}: {shown}")
            continue
        ok, summary, printed = run(cmd, env)
        failed += not ok
        print(f"{where}{'ok' if ok else 'FAILED'}: {shown}\n    {summary}", flush=True)
        of = _without_comment(first).strip()
        hinted = [Command(cmd.line, text, hint_of=of) for text in hints(printed)]
        classify(hinted, skips, seen)
        cmds += hinted
        todo[:0] = hinted
    ran = sum(1 for c in cmds if not c.skip)
    print(f"{ran - failed} passed, {failed} failed, {len(cmds) - ran} not run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
