"""Accuracy and agreement of `qtool evaluate` runs against an fp32 one, with 95% intervals.

    qtool evaluate runs/x/finetuned -r RECIPE -o runs/x/eval_fp32.json
    qtool evaluate runs/x/qat -r RECIPE -o runs/x/eval_qat.json
    python scripts/compare_evals.py --data data/rt-sentiment/test.jsonl \\
        --reference fp32=runs/x/eval_fp32.json --run "QAT=runs/x/eval_qat.json" \\
        --json docs/results/qat_autoquant.json

For sequence classification metrics files (`predictions` are label ids in file order, as
`qtool evaluate` writes them). Intervals: paired bootstrap over examples (tasks/intervals.py).
The results file names the machine and carries `renderer: compare_evals` for update_readme.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _labelled(spec: str) -> tuple[str, Path]:
    label, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"expected LABEL=PATH, not '{spec}'")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the split the runs scored")
    parser.add_argument("--reference", required=True, help="LABEL=metrics.json (the fp32 run)")
    parser.add_argument("--run", action="append", default=[], help="LABEL=metrics.json")
    parser.add_argument("--note", default="", help="a line for the README under the table")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np

    from qtoolkit.bench.machine import machine_info
    from qtoolkit.data import read_text_examples
    from qtoolkit.tasks.intervals import agreement_interval, paired_bootstrap

    labels = np.array([int(e.label) for e in read_text_examples(args.data)])
    ref_label, ref_path = _labelled(args.reference)
    runs = [(ref_label, ref_path), *(_labelled(r) for r in args.run)]
    preds = {}
    for label, path in runs:
        data = json.loads(path.read_text())
        p = np.asarray(data["predictions"], dtype=np.int64)
        if p.shape != labels.shape:
            raise SystemExit(f"{path}: {len(p)} predictions for {len(labels)} examples")
        preds[label] = (p, data)
    ref = preds[ref_label][0]
    rows = []
    for label, (p, data) in preds.items():
        ok, ref_ok = (p == labels).astype(float), (ref == labels).astype(float)
        row = {"label": label, "target": data.get("target"), "accuracy": float(ok.mean())}
        if label != ref_label:
            row["delta_vs_reference"] = paired_bootstrap(ok, ref_ok).to_dict()
            row["agreement"] = agreement_interval(list(p), list(ref)).to_dict()
        rows.append(row)
    report = {
        "renderer": "compare_evals",
        "machine": machine_info(),
        "data": str(args.data),
        "num_examples": int(len(labels)),
        "reference": ref_label,
        "note": args.note,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from update_readme import render_compare_evals

    print(render_compare_evals(report))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
