"""The benchmark CLI: a --quick run writes a complete, finite table (no timing assertions)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout
    )


def test_help_and_bad_suite():
    r = run_bench("--help")
    assert r.returncode == 0
    for flag in ("--quick", "--only", "--out", "--device", "mixing", "training"):
        assert flag in r.stdout
    r = run_bench("--only", "mixing,nope", "--out", "unused")
    assert r.returncode == 2 and "unknown suite(s) nope" in r.stderr
    assert "available: mixing, training" in r.stderr  # (later suites are listed after these)


def positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@pytest.mark.slow
def test_quick_run_writes_json_and_csv(tmp_path):
    out = tmp_path / "bench"
    r = run_bench("--quick", "--only", "mixing,training", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ours/floor" in r.stdout and "results.json" in r.stdout

    data = json.loads((out / "results.json").read_text())
    m = data["machine"]
    for key in ("cpu_model", "cpu_capability", "cpu_cores", "torch", "date", "command", "git_commit", "cuda_device"):
        assert key in m, key
    assert m["torch"] and m["cpu_cores"] >= 1 and "--quick" in m["command"] and m["suites"] == ["mixing", "training"]

    rows = data["rows"]
    by_suite = {s: [x for x in rows if x["suite"] == s] for s in ("mixing", "training")}
    cases = [x["case"] for x in by_suite["mixing"]]
    # 2 sizes x 2 grids x (out of place, in place)
    assert len([c for c in cases if c.endswith("out of place")]) == 4
    assert len([c for c in cases if c.endswith("in place")]) == 4
    assert {c.split()[2] for c in cases} == {"2x2", "2x3-2"}
    for x in by_suite["mixing"]:
        assert x["unit"] == "ms" and positive(x["ours"]) and positive(x["reference"]) and positive(x["floor"])
        assert positive(x["ours/ref"]) and positive(x["ours/floor"])
        assert "reference == ours on one plan: yes" in x["note"] or "in place" in x["case"]
        assert x["met"] is not False  # False would mean the reference and ours disagree
    train_cases = [x["case"] for x in by_suite["training"]]
    assert any(c.startswith("train step") for c in train_cases)
    assert "mixing share of the step" in train_cases
    assert "loader alone, workers=0" in train_cases and "loader alone, workers=2" in train_cases
    for x in by_suite["training"]:
        assert positive(x["ours"]), x
        assert x["reference"] is None or positive(x["reference"]), x

    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert list(table[0]) == [
        "suite",
        "case",
        "ours",
        "reference",
        "floor",
        "unit",
        "ours/ref",
        "ours/floor",
        "target",
        "met",
        "note",
    ]
    for line, x in zip(table, rows, strict=False):
        assert line["case"] == x["case"] and math.isclose(float(line["ours"]), x["ours"])
