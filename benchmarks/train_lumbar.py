"""Train the shipped lumbar model through the `spinelabel train` command and record its time.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.train_lumbar [--out src/spinelabel/models/lumbar] [--steps 2000]
    python -m benchmarks.train_lumbar --from-scratch [--steps 5000]   # the base model's recipe

Trains on every scan of ../shared/data/lumbar-mr except the validation split in
benchmarks/lumbar_split.json, then writes the wall time to docs/RESULTS.md.

The shipped model (v4) fine-tunes ``benchmarks/models/lumbar-base`` (v3: 5000
steps from scratch with S1 pseudo-labels, ``--from-scratch``) with the S1
points annotated by eye (``annotations/lumbar-s1.csv``, docs/annotations.md)
added to the training scans and the caudal-segment and caudal-cut
augmentations of ``training.sampling``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import REPO, SHARED, git_commit, write_section


def parse_training_args(
    argv, region: str, steps: int, fraction: float, n_synthetic: int, complete_anchors: bool = False
) -> argparse.Namespace:
    """The options both training benchmarks take, with the shipped recipe as defaults."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "src" / "spinelabel" / "models" / region)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--synthetic-fraction", type=float, default=fraction)
    ap.add_argument("--synthetic-scans", type=int, default=n_synthetic)
    ap.add_argument("--complete-anchors", action=argparse.BooleanOptionalAction, default=complete_anchors)
    return ap.parse_args(argv)


def run_training(args: argparse.Namespace, region: str) -> tuple[int, float, str, dict]:
    """`spinelabel train` on ../shared minus the validation split.

    Returns
    -------
    exit code, wall seconds, commit at the start, the written model config (empty on failure)
    """
    from spinelabel.cli import main as cli

    split = REPO / "benchmarks" / "lumbar_split.json"
    commit = git_commit()  # the code that trains, recorded before the run
    t0 = time.perf_counter()
    code = cli(["train", str(SHARED), "--exclude", str(split), "--region", region, "--out", str(args.out),
                "--steps", str(args.steps), "--synthetic-fraction", str(args.synthetic_fraction),
                "--synthetic-scans", str(args.synthetic_scans),
                "--complete-anchors" if args.complete_anchors else "--no-complete-anchors"])
    seconds = time.perf_counter() - t0
    cfg = {} if code else json.loads((args.out / "config.json").read_text())
    return code, seconds, commit, cfg


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


BASE_MODEL = REPO / "benchmarks" / "models" / "lumbar-base"
S1_LABELS = REPO / "annotations" / "lumbar-s1.csv"


def _fine_tune(args: argparse.Namespace) -> tuple[int, float, str, dict]:
    """`spinelabel train` of the shipped recipe: the base model fine-tuned with the annotated S1 points."""
    from spinelabel.cli import main as cli

    split = REPO / "benchmarks" / "lumbar_split.json"
    commit = git_commit()
    t0 = time.perf_counter()
    code = cli(["train", str(SHARED), "--exclude", str(split), "--region", "lumbar", "--out", str(args.out),
                "--steps", str(args.steps), "--init", str(BASE_MODEL), "--learning-rate", "5e-4",
                "--synthetic-fraction", str(args.synthetic_fraction), "--synthetic-scans", str(args.synthetic_scans),
                "--extra-labels", str(S1_LABELS), "--no-complete-anchors"])
    seconds = time.perf_counter() - t0
    cfg = {} if code else json.loads((args.out / "config.json").read_text())
    return code, seconds, commit, cfg


def main(argv: list[str] | None = None) -> int:
    scratch = "--from-scratch" in (argv if argv is not None else sys.argv[1:])
    rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--from-scratch"]
    args = parse_training_args(rest, "lumbar", steps=5000 if scratch else 2000, fraction=0.25, n_synthetic=80,
                               complete_anchors=scratch)
    code, seconds, commit, cfg = run_training(args, "lumbar") if scratch else _fine_tune(args)
    if code:
        return code
    s1 = sum("S1" in scan for scan in [cfg["training"].get("pseudo_labels", {}).get(s, []) for s in cfg["training"]["scans"]])
    how = (f"S1 pseudo-labels (`--complete-anchors`) in {s1} of {len(cfg['training']['scans'])} training scans"
           if scratch else f"fine-tuned from `benchmarks/models/lumbar-base`, S1 annotated by eye (`{S1_LABELS.relative_to(REPO)}`)")
    body = f"""## Lumbar: training time

- command: `python -m benchmarks.train_lumbar {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {utc_now()}, commit `{commit}` (at the start)
- {len(cfg['training']['scans'])} training scans plus {args.synthetic_scans} synthetic phantoms
  ({args.synthetic_fraction:.0%} of crops), {args.steps} steps of 16 crops: **{seconds / 60:.1f} min** wall time in all
  (of which phantoms + optimisation {cfg['training']['seconds'] / 60:.1f} min), 2-core CPU; target < 60 min.
- {how}.
"""
    write_section(REPO / "docs" / "RESULTS.md", "lumbar-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
