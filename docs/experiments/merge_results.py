"""Merge the results.json of one experiment from several sessions into one view (used for the
`*-merged` folders here, whose sessions' run folders were lost with their machines).

Per row, the file with the most finished runs wins (ties: the later file); the claims are decided
again on the merged rows, and the table and plots are written as `spin experiment` writes them.

    python docs/experiments/merge_results.py OUT first/results.json second/results.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from spin.experiments.catalog import get_experiment
from spin.experiments.plots import write_plots
from spin.experiments.results import decide_claims, write_results


def finished(row: dict[str, Any]) -> int:
    return sum(run["status"] == "finished" for run in row["runs"])


def merge(sources: list[Path]) -> dict[str, Any]:
    datas = [json.loads(path.read_text()) for path in sources]
    experiment = get_experiment(datas[0]["experiment"])
    rows = []
    for first in datas[0]["rows"]:
        candidates = [
            (finished(row), i, row, path)
            for i, (data, path) in enumerate(zip(datas, sources, strict=True))
            for row in data["rows"]
            if row["name"] == first["name"]
        ]
        n, _, row, path = max(candidates, key=lambda c: (c[0], c[1]))
        rows.append({**row, "merged_from": str(path) if n else None})
    claims = decide_claims(experiment, rows)
    settings = {**datas[-1]["settings"], "command": "merged from " + ", ".join(map(str, sources))}
    return {**datas[0], "rows": rows, "claims": claims, "settings": settings}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    merged = merge([Path(p) for p in sys.argv[2:]])
    write_results(out, merged, write_plots(out, merged))
    print(f"wrote {out}/results.json, results.md and plots")
