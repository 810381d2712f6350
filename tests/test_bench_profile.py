"""``python -m bench --profile``: py-spy's collapsed stacks read into the top entries, from a
real py-spy attached to a real process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bench.profile import Profiler, top

BUSY = """
import time
def spin_here():
    end = time.monotonic() + 30
    while time.monotonic() < end:
        sum(range(1000))
print("ready", flush=True)
spin_here()
"""


def test_top_ranks_functions_by_self_and_total_samples():
    collapsed = (
        "<module> (a.py:1);main (a.py:5);render (t.py:10) 30\n"
        "<module> (a.py:1);main (a.py:6);render (t.py:12);escape (t.py:40) 10\n"
        "<module> (a.py:1);main (a.py:7) 60\n"
        "garbage line\n"
    )
    samples, entries = top(collapsed, n=3)
    assert samples == 100
    got = [(e.function, e.self_samples, e.total_samples) for e in entries]
    assert got == [
        ("main (a.py)", 60, 100),
        ("render (t.py)", 30, 40),  # its own 30 plus the 10 below it, lines folded
        ("escape (t.py)", 10, 10),
    ]


async def test_a_real_process_profiled_names_its_busy_function(tmp_path: Path):
    busy = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BUSY,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert busy.stdout is not None and (await busy.stdout.readline()).strip() == b"ready"
        profiler = Profiler(tmp_path)
        profiler.attach("busy", busy.pid)
        await asyncio.sleep(2)
        (table,) = await profiler.stop()
    finally:
        busy.kill()
        await busy.wait()
    assert "**busy**:" in table
    top_row = table.splitlines()[4]  # the first entry under the table's header
    assert "spin_here" in table and ("spin_here" in top_row or "sum" in top_row), table
    assert (tmp_path / "busy.top.txt").read_text().startswith("**busy**")
