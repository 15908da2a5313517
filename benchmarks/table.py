"""One result row per measured case, and the table / JSON / CSV writers."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "COLUMNS", "format_table", "write_json", "write_csv", "ratio"]

COLUMNS = ("suite", "case", "ours", "reference", "floor", "unit", "ours/ref", "ours/floor", "target", "met")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a / b


@dataclass
class Row:
    """One measurement: ``ours`` against a ``reference`` (another way of doing the same) and a
    ``floor`` (what cannot be avoided), all in ``unit``; ``target`` says in words what
    ``met`` checked (None: nothing to check)."""

    suite: str
    case: str
    ours: float
    reference: float | None = None
    floor: float | None = None
    unit: str = "ms"
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ours_ref(self) -> float | None:
        return ratio(self.ours, self.reference)

    @property
    def ours_floor(self) -> float | None:
        return ratio(self.ours, self.floor)

    def as_dict(self) -> dict[str, Any]:
        """The fields plus the two ratios; non-finite numbers become None (JSON null)."""
        d = asdict(self)
        d["ours/ref"] = self.ours_ref
        d["ours/floor"] = self.ours_floor
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or 0.01 <= abs(v) < 10000:
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return f"{v:.3g}"


def _met(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "NO")


def _cells(row: Row) -> list[str]:
    return [
        row.suite,
        row.case,
        _num(row.ours),
        _num(row.reference),
        _num(row.floor),
        row.unit,
        _num(row.ours_ref),
        _num(row.ours_floor),
        row.target,
        _met(row.met),
    ]


def format_table(rows: Sequence[Row], notes: bool = True) -> str:
    """The rows as an aligned text table (notes, if any, listed below it)."""
    body = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    numeric = {2, 3, 4, 6, 7}
    lines = []
    for n, line in enumerate(body):
        cells = [
            c.rjust(w) if (i in numeric and n) else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=False))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        extra = [f"  [{r.suite}] {r.case}: {r.note}" for r in rows if r.note]
        if extra:
            lines += ["", "notes:", *extra]
    return "\n".join(lines)


def write_json(path: str | Path, rows: Sequence[Row], machine: dict[str, Any]) -> Path:
    path = Path(path)
    payload = {"machine": machine, "columns": list(COLUMNS) + ["note"], "rows": [r.as_dict() for r in rows]}
    path.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    return path


def write_csv(path: str | Path, rows: Sequence[Row]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(COLUMNS) + ["note"])
        for r in rows:
            d = r.as_dict()
            w.writerow([("" if d[c] is None else d[c]) for c in COLUMNS] + [r.note])
    return path
