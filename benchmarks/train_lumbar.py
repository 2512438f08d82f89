"""Train the shipped lumbar model through the `spinelabel train` command and record its time.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.train_lumbar [--out src/spinelabel/models/lumbar] [--steps 5000] [--synthetic-fraction 0.25]

Trains on every scan of ../shared/data/lumbar-mr except the validation split in
benchmarks/lumbar_split.json, then writes the wall time to docs/RESULTS.md.
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


def main(argv: list[str] | None = None) -> int:
    args = parse_training_args(argv, "lumbar", steps=5000, fraction=0.25, n_synthetic=80, complete_anchors=True)
    code, seconds, commit, cfg = run_training(args, "lumbar")
    if code:
        return code
    body = f"""## Lumbar: training time

- command: `python -m benchmarks.train_lumbar {' '.join(argv or sys.argv[1:])}`
- date: {utc_now()}, commit `{commit}` (at the start)
- {len(cfg['training']['scans'])} training scans plus {args.synthetic_scans} synthetic phantoms
  ({args.synthetic_fraction:.0%} of crops), {args.steps} steps of 16 crops: **{seconds / 60:.1f} min** wall time in all
  (of which phantoms + optimisation {cfg['training']['seconds'] / 60:.1f} min), 2-core CPU; target < 60 min.
- S1 pseudo-labels (`--complete-anchors`, from the previously shipped detector): {len(cfg['training'].get('pseudo_labels', {}))}
  of {len(cfg['training']['scans'])} training scans.
"""
    write_section(REPO / "docs" / "RESULTS.md", "lumbar-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
