"""The benchmark still runs: ``python -m bench --size smoke`` builds its own stack, goes
through every measurement and prints the table. No timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import ROW_IDS
from settings import ROOT


def test_smoke_benchmark_runs_every_measurement_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=270,  # a minute or two on a busy machine; under pytest's 300 s
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| # | measure | result |" in done.stdout
    rows = {row["id"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(ROW_IDS) <= set(rows)
    for rid in ROW_IDS:
        assert f"| {rid} |" in done.stdout
    assert "selected" in rows["5-sweep"]["result"]  # the sweep ran over its customers
    assert json.loads(out.read_text())["meta"]["failures"] == []
