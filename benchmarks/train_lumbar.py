"""Train the shipped lumbar model through the `spinelabel train` command and record its time.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.train_lumbar [--out src/spinelabel/models/lumbar] [--steps 2000]
    python -m benchmarks.train_lumbar --from-scratch [--steps 5000]   # the base model's recipe
    python -m benchmarks.train_lumbar --one-stage [--steps 3000]      # leave one source out's recipe

Trains on every scan of ../shared/data/lumbar-mr except the validation split in
benchmarks/lumbar_split.json, then writes the wall time to docs/RESULTS.md.

The shipped model (v7) fine-tunes ``benchmarks/models/lumbar-base`` (v3: 5000
steps from scratch with S1 pseudo-labels, ``--from-scratch``) with the S1
points annotated by eye (``annotations/lumbar-s1.csv``, docs/annotations.md)
added to the training scans and the augmentations of ``training.sampling``
as they stand (docs/training.md): the recipe is the code at the commit that
trained it, recorded in the model's ``config.json``.

``--one-stage`` trains from a random start with the recipe that
``benchmarks.lumbar_loso`` measures on an unseen source (``recipe_options``
and ``annotated_s1_options``), on both sources' training scans.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import REPO, SHARED, git_commit, write_section


SPLIT = REPO / "benchmarks" / "lumbar_split.json"
BASE_MODEL = REPO / "benchmarks" / "models" / "lumbar-base"
S1_LABELS = REPO / "annotations" / "lumbar-s1.csv"
SYNTHETIC_FRACTION = 0.25  # share of crops drawn from phantoms (docs/training.md)
SYNTHETIC_SCANS = 80  # phantoms drawn before training
ONE_STAGE_STEPS = 3000  # leave one source out's training length, from a random start
FINE_TUNE_LEARNING_RATE = "5e-4"  # peak learning rate of the shipped fine-tune (a quarter of train's 2e-3)


def annotated_s1_options() -> list[str]:
    """Train on our S1 points (``annotations/lumbar-s1.csv``) instead of S1 pseudo-labels."""
    return ["--extra-labels", str(S1_LABELS), "--no-complete-anchors"]


def recipe_options(
    steps: int, synthetic_fraction: float = SYNTHETIC_FRACTION, synthetic_scans: int = SYNTHETIC_SCANS
) -> list[str]:
    """``spinelabel train`` options shared by every lumbar recipe: length and phantoms."""
    return ["--steps", str(steps), "--synthetic-fraction", str(synthetic_fraction),
            "--synthetic-scans", str(synthetic_scans)]


def parse_args(argv) -> argparse.Namespace:
    """The shipped recipe's options (the base model's with ``--from-scratch``, leave one source out's with
    ``--one-stage``)."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "src" / "spinelabel" / "models" / "lumbar")
    stage = ap.add_mutually_exclusive_group()
    stage.add_argument("--from-scratch", action="store_true", help="the base model's recipe: 5000 steps, S1 pseudo-labels")
    stage.add_argument("--one-stage", action="store_true",
                       help="leave one source out's recipe from a random start: 3000 steps, our S1 points")
    ap.add_argument("--steps", type=int, default=None, help="default 2000 (5000 from scratch, 3000 one stage)")
    ap.add_argument("--synthetic-fraction", type=float, default=SYNTHETIC_FRACTION)
    ap.add_argument("--synthetic-scans", type=int, default=SYNTHETIC_SCANS)
    ap.add_argument("--device", default="cpu", help="torch device of the optimisation (cpu; cuda where there is a GPU)")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 5000 if args.from_scratch else ONE_STAGE_STEPS if args.one_stage else 2000
    return args


def train_args(args: argparse.Namespace) -> list[str]:
    """`spinelabel train` on ../shared minus the validation split: the shipped, the base or the one-stage recipe."""
    common = ["train", str(SHARED), "--exclude", str(SPLIT), "--region", "lumbar", "--out", str(args.out),
              *recipe_options(args.steps, args.synthetic_fraction, args.synthetic_scans), "--device", args.device]
    if args.from_scratch:
        return [*common, "--complete-anchors"]
    if args.one_stage:  # what benchmarks.lumbar_loso trains on one source
        return [*common, *annotated_s1_options()]
    return [*common, "--init", str(BASE_MODEL), "--learning-rate", FINE_TUNE_LEARNING_RATE, *annotated_s1_options()]


def run_training(cli_args: list[str], out: Path) -> tuple[int, float, str, dict]:
    """Run `spinelabel train` with ``cli_args``, timed.

    Returns
    -------
    exit code, wall seconds, commit at the start, the written model config (empty on failure)
    """
    from spinelabel.cli import main as cli

    commit = git_commit()  # the code that trains, recorded before the run
    t0 = time.perf_counter()
    code = cli(cli_args)
    seconds = time.perf_counter() - t0
    cfg = {} if code else json.loads((out / "config.json").read_text())
    return code, seconds, commit, cfg


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code, seconds, commit, cfg = run_training(train_args(args), args.out)
    if code:
        return code
    if args.from_scratch:
        pseudo = cfg["training"].get("pseudo_labels", {})
        how = (f"S1 pseudo-labels (`--complete-anchors`) in {sum('S1' in v for v in pseudo.values())} of "
               f"{len(cfg['training']['scans'])} training scans")
    elif args.one_stage:
        how = (f"one stage from a random start (leave one source out's recipe), S1 annotated by eye "
               f"(`{S1_LABELS.relative_to(REPO)}`)")
    else:
        how = f"fine-tuned from `benchmarks/models/lumbar-base`, S1 annotated by eye (`{S1_LABELS.relative_to(REPO)}`)"
    body = f"""## Lumbar: training time

- command: `python -m benchmarks.train_lumbar {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {utc_now()}, commit `{commit}` (at the start)
- {len(cfg['training']['scans'])} training scans plus {args.synthetic_scans} synthetic phantoms
  ({args.synthetic_fraction:.0%} of crops), {args.steps} steps of 16 crops: **{seconds / 60:.1f} min** wall time in all
  (of which phantoms + optimisation {cfg['training']['seconds'] / 60:.1f} min), {'2-core CPU' if args.device == 'cpu' else f'device {args.device} (crops on the CPU)'}; target < 60 min on the CPU.
- {how}.
"""
    write_section(REPO / "docs" / "RESULTS.md", "lumbar-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
