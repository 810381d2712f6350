"""``python -m bench --profile DIR``: py-spy samples each process of the run (the worker, the
API, and the bench process itself, which runs the send activity of row 4) while the
measurements run, and the top entries go to ``DIR/<name>.top.txt`` and to stderr.

py-spy (a dev dependency) attaches to a running process by pid and writes collapsed stacks
(``--format raw``: one ``frame;frame;...;leaf count`` line per distinct stack) when it gets
SIGINT. A frame is ``function (file:line)``; ``top`` folds lines away and ranks functions by
the samples in which they are the leaf ("self") and in which they are on the stack at all
("total"), the two columns a profile's reader asks for first.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_SECOND = 97  # not a multiple of the event loop's or the OS's tick
TOP = 25
_LINE = re.compile(r"\s*\(([^)]*?):\d+\)$")


@dataclass(frozen=True)
class Entry:
    function: str  # "name (file)"
    self_samples: int
    total_samples: int


def _frame(frame: str) -> str:
    """``send_step (activities/send.py:98)`` → ``send_step (activities/send.py)``."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", frame.strip())


def top(collapsed: str, n: int = TOP) -> tuple[int, list[Entry]]:
    """The ``n`` functions with most samples as the leaf of a stack, and all samples, from
    py-spy's collapsed stacks. A function that recurses counts once per stack in total."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        k = int(count)
        samples += k
        own[frames[-1]] += k
        for name in set(frames):
            total[name] += k
    entries = [Entry(name, k, total[name]) for name, k in own.most_common(n)]
    return samples, entries


def table(name: str, samples: int, entries: list[Entry]) -> str:
    """Markdown, as BENCHMARKS.md quotes it: self and total shares of the process's samples."""
    rows = [
        f"**{name}**: {samples} samples at {SAMPLES_PER_SECOND}/s (idle included)",
        "",
        "| self | total | function |",
        "|---|---|---|",
    ]
    for e in entries:
        share = e.self_samples / samples if samples else 0.0
        whole = e.total_samples / samples if samples else 0.0
        rows.append(f"| {share:.1%} | {whole:.1%} | `{e.function}` |")
    return "\n".join(rows)


class Profiler:
    """py-spy recording the processes given to ``attach`` until ``stop``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._spies: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        exe = Path(sys.executable).with_name("py-spy")
        found = str(exe) if exe.exists() else shutil.which("py-spy")
        if found is None:
            raise RuntimeError("py-spy is not installed (make setup installs the dev group)")
        self._exe = found

    def attach(self, name: str, pid: int) -> None:
        out = self.directory / f"{name}.collapsed.txt"
        spy = subprocess.Popen(
            [
                self._exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(SAMPLES_PER_SECOND),
                "--format",
                "raw",
                "--idle",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / f"{name}.py-spy.log").open("wb"),
        )
        self._spies.append((name, spy, out))

    async def stop(self) -> list[str]:
        """Ends every recording (SIGINT: py-spy writes its file) and returns the tables."""
        tables = []
        for name, spy, out in self._spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
            for _ in range(300):
                if spy.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                spy.kill()
            if not out.exists():
                tables.append(f"**{name}**: no profile (see {name}.py-spy.log)")
                continue
            samples, entries = top(out.read_text(encoding="utf-8", errors="replace"))
            text = table(name, samples, entries)
            (self.directory / f"{name}.top.txt").write_text(text + "\n", encoding="utf-8")
            tables.append(text)
        self._spies.clear()
        return tables
