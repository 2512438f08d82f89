"""Cervical ablation: what do the real lumbar scans add to a detector trained on phantoms?

Usage (repository root, ../shared beside it)::

    python -m benchmarks.cervical_ablation [--synthetic-only DIR] [--steps 5000]

Two arms trained with the recipe of the cervical base model
(``benchmarks/models/cervical-base``, the shipped cervical model until real
cervical MR was annotated: 120 phantoms, seed 0, 5000 steps) differ only in
where the crops come from:

- ``phantoms + real lumbar``: the base model, 30 % of its crops from the 39
  real lumbar training scans;
- ``phantoms only``: ``--synthetic-fraction 1.0``. Trained first (about
  45 min on 2 CPU cores) when ``--synthetic-only DIR`` holds no model yet.

Both are run with the shipped model's detection settings, so only the
weights differ, and are measured on data neither arm trained on: held-out
cervical phantoms (seed 1000, as ``benchmarks.cervical``) and the real lumbar
validation scans (``benchmarks/lumbar_split.json``: 28 now, 13 in the recorded run), labeled over the
whole chain (``--region whole``), which measures how a detector carries over
to real MR. Writes the "cervical-ablation" section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cervical import CERVICAL_RADIUS_MM, _label_all, _mm, _pct
from benchmarks.lumbar import REPO, SHARED, git_commit, write_section

SPLIT = REPO / "benchmarks" / "lumbar_split.json"


def train_synthetic_only(out: Path, steps: int) -> int:
    """`spinelabel train` as the cervical base model was trained, with no real crops."""
    from spinelabel.cli import main as cli

    return cli(["train", str(SHARED), "--exclude", str(SPLIT), "--region", "cervical", "--out", str(out),
                "--steps", str(steps), "--synthetic-fraction", "1.0", "--synthetic-scans", "120",
                "--no-complete-anchors"])


def _labeler(model_dir: Path, detection, region: str):
    from spinelabel.models import load_model
    from spinelabel.pipeline import Labeler

    config, net = load_model(model_dir)
    return Labeler(replace(config, detection=detection), net, region)


def _row(arm: str, data: str, report, n_failures: int) -> str:
    from spinelabel.evaluation import report_to_dict

    o = report_to_dict(report)["overall"]
    c1 = report.per_level.get("C1")
    err = o["error_mm"]
    return (
        f"| {arm} | {data} | {_pct(o['sensitivity'])} | {_pct(o['precision'])} | {_mm(err['mean'])} / {_mm(err['p95'])} mm | "
        f"{_pct(o['identification_rate'])} | {o['n_scans_correct']}/{o['n_scans']} | "
        f"{f'{c1[0]}/{c1[1]}' if c1 else '—'} | {n_failures} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shipped", default=str(REPO / "benchmarks" / "models" / "cervical-base"),
                    help="the phantoms + real lumbar arm")
    ap.add_argument("--synthetic-only", type=Path, default=Path(tempfile.gettempdir()) / "spinelabel-cervical-synthetic-only")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--n", type=int, default=30, help="held-out cervical phantoms")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    from spinelabel.annotations import load_annotations
    from spinelabel.evaluation import evaluate, format_report
    from spinelabel.models import read_config, resolve_model_dir
    from spinelabel.synthetic_cases import write_synthetic_cases

    if not (args.synthetic_only / "config.json").is_file():
        code = train_synthetic_only(args.synthetic_only, args.steps)
        if code:
            return code
    shipped_dir = resolve_model_dir(args.shipped)
    shipped = read_config(shipped_dir)
    arms = {"phantoms + real lumbar": shipped_dir, "phantoms only": args.synthetic_only}
    for name, d in arms.items():
        steps = read_config(d).training.get("settings", {}).get("steps")
        if steps != shipped.training.get("settings", {}).get("steps"):
            print(f"warning: arm {name!r} was trained for {steps} steps, the shipped model for a different number")

    tmp = Path(tempfile.mkdtemp(prefix="spinelabel-ablation-"))
    phantoms = write_synthetic_cases(tmp / "cervical", args.n, "cervical", args.seed, prefix="heldout-cervical")
    lumbar = json.loads(SPLIT.read_text())["validation"]
    datasets = {
        f"{args.n} held-out cervical phantoms": (
            "cervical",
            {c.name: c / "image.nii.gz" for c in phantoms},
            load_annotations([c / "centroids.json" for c in phantoms]),
            CERVICAL_RADIUS_MM,
        ),
        f"{len(lumbar)} real lumbar validation scans, `--region whole`": (
            "whole",
            {c: SHARED / c / "image.nii.gz" for c in lumbar},
            load_annotations([SHARED / c / "centroids.json" for c in lumbar]),
            None,
        ),
    }
    rows = []
    for data, (region, images, gt, radius) in datasets.items():
        for arm, model_dir in arms.items():
            preds, _, failures, _ = _label_all(_labeler(model_dir, shipped.detection, region), images)
            report = evaluate(preds, gt, **({"match_radius_mm": radius} if radius else {}))
            print(f"== {arm} on {data}\n{format_report(report)}")
            rows.append(_row(arm, data, report, len(failures)))

    cmd = "python -m benchmarks.cervical_ablation " + " ".join(argv if argv is not None else sys.argv[1:])
    body = f"""## Cervical: ablation, phantoms only against phantoms + real lumbar

- command: `{cmd.strip()}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- arms: the cervical base model `benchmarks/models/cervical-base` (70 % of crops from phantoms, 30 % from the real lumbar training
  scans) and the same recipe with `--synthetic-fraction 1.0` (phantoms only), {args.steps} steps each;
  both run with the shipped detection settings, so only the weights differ; the phantoms-only arm
  (`{args.synthetic_only}`, trained by `train_synthetic_only` above) took
  {read_config(args.synthetic_only).training.get('seconds', 0) / 60:.1f} min of training
- test data neither arm trained on: phantoms of seed {args.seed} (match radius {CERVICAL_RADIUS_MM:.0f} mm) and the
  lumbar validation split (real MR; labeled over the whole chain, default radius)

| arm | test data | sensitivity | precision | error mean / p95 | identification | scans right | C1 | failures |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(args.results, "cervical-ablation", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
