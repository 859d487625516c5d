"""Measure detection quality: generate sample data at a scale (default 0.1), run the whole pipeline on
a fresh lake, and print precision and recall per defect type against the generator's truth file (and
of record linkage). The same numbers are kept in the run report (``_reports/latest.json``,
``evaluation``). Exit 1 when any defect type is below 0.99.

    .venv/bin/python scripts/evaluate.py --scale 0.1 --seed 7 --out /tmp/lake-eval
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp/lake-eval")
    ap.add_argument("--as-of", default="2026-11-01")
    args = ap.parse_args()

    from jobs import pipeline
    from lake.cli import _print_evaluation, console
    from sample.generate import generate
    from lake.settings import Settings

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    settings = Settings.from_env(root=str(out / "lake"), inbox=str(out / "inbox"))
    t0 = time.time()
    generate(args.scale, args.seed, Path(settings.inbox))
    print(f"generated scale {args.scale} seed {args.seed} in {time.time() - t0:.0f} s", flush=True)
    report = pipeline.run(settings, args.as_of)
    ev = report["evaluation"]
    _print_evaluation(ev)
    console.print(f"pipeline {report['seconds']:.0f} s; run report {report.get('report_path')}")
    return 0 if ev["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
