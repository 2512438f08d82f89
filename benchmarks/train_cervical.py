"""Train the shipped cervical (and whole-spine) model through `spinelabel train` and record its time.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.train_cervical [--out src/spinelabel/models/cervical] [--steps 5000]

No annotated cervical MR exists in ../shared: 70 % of the crops come from
synthetic cervical and whole-spine phantoms, 30 % from the real lumbar training
scans (the validation split in benchmarks/lumbar_split.json stays excluded, so
the lumbar benchmark remains held out for this model too). See docs/cervical.md.
"""

from __future__ import annotations

import sys

from benchmarks.lumbar import REPO, write_section
from benchmarks.train_lumbar import parse_training_args, run_training, utc_now


def main(argv: list[str] | None = None) -> int:
    args = parse_training_args(argv, "cervical", steps=5000, fraction=0.7, n_synthetic=120)
    code, seconds, commit, cfg = run_training(args, "cervical")
    if code:
        return code
    body = f"""## Cervical: training time

- command: `python -m benchmarks.train_cervical {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {utc_now()}, commit `{commit}` (at the start)
- {args.synthetic_scans} synthetic phantoms ({args.synthetic_fraction:.0%} of crops) plus {len(cfg['training']['scans'])}
  real lumbar scans, {args.steps} steps of 16 crops: **{seconds / 60:.1f} min** wall time in all
  (of which phantoms + optimisation {cfg['training']['seconds'] / 60:.1f} min), 2-core CPU.
"""
    write_section(REPO / "docs" / "RESULTS.md", "cervical-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
