"""Train the shipped cervical (and whole-spine) model through `spinelabel train` and record its time.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.train_cervical [--out src/spinelabel/models/cervical] [--steps 1200] [--threads 2]

Fine-tunes ``benchmarks/models/cervical-base`` (70 % phantoms, 30 % real lumbar
crops, 5000 steps: the model shipped before real cervical MR was available) on
the three real cervical subjects of ``annotations/cervical-mr.csv`` (35 % of
crops), the real lumbar training scans (30 %; the validation split in
benchmarks/lumbar_split.json stays excluded) and phantoms (35 %). The recipe is
``benchmarks.cervical_real.fine_tune_args``, the one its leave-one-subject-out
folds use. See docs/cervical.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.cervical_real import ANNOTATIONS, BASE_MODEL, CERVICAL_SHARE, PHANTOM_SHARE, STEPS, fine_tune_args
from benchmarks.lumbar import REPO, write_section
from benchmarks.train_lumbar import run_training, utc_now


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "src" / "spinelabel" / "models" / "cervical")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--threads", type=int, default=2, help="1 when other trainings share the cores")
    ap.add_argument("--device", default="cpu", help="torch device of the optimisation (cpu; cuda where there is a GPU)")
    args = ap.parse_args(argv)

    cli_args = fine_tune_args([ANNOTATIONS], args.out, args.steps, BASE_MODEL, args.threads, args.device)
    code, seconds, commit, cfg = run_training(cli_args, args.out)
    if code:
        return code
    real = [s for s in cfg["training"]["scans"] if s.startswith("errsm")]
    body = f"""## Cervical: training time

- command: `python -m benchmarks.train_cervical {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {utc_now()}, commit `{commit}` (at the start)
- fine-tuned from `benchmarks/models/cervical-base` for {args.steps} steps of 16 crops: {len(real)} real cervical
  subjects ({', '.join(real)}; {CERVICAL_SHARE:.0%} of crops), {len(cfg['training']['scans']) - len(real)} real lumbar
  scans ({1 - CERVICAL_SHARE - PHANTOM_SHARE:.0%}), 60 phantoms ({PHANTOM_SHARE:.0%}): **{seconds / 60:.1f} min** wall time
  in all, {'2-core CPU' if args.device == 'cpu' else f'device {args.device}, crops on the CPU'} ({args.threads} thread(s); other trainings side by side when 1).
"""
    write_section(REPO / "docs" / "RESULTS.md", "cervical-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
