"""Train the shipped cervical (and whole-spine) model through `spinelabel train` and record its time.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.train_cervical [--out src/spinelabel/models/cervical] [--steps 4000]

No annotated cervical MR exists in ../shared: 70 % of the crops come from
synthetic cervical and whole-spine phantoms, 30 % from the real lumbar training
scans (the validation split in benchmarks/lumbar_split.json stays excluded, so
the lumbar benchmark remains held out for this model too). See docs/cervical.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import REPO, SHARED, git_commit, write_section


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "src" / "spinelabel" / "models" / "cervical")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--synthetic-fraction", type=float, default=0.7)
    ap.add_argument("--synthetic-scans", type=int, default=120)
    args = ap.parse_args(argv)
    from spinelabel.cli import main as cli

    split = REPO / "benchmarks" / "lumbar_split.json"
    commit = git_commit()  # the code that trains, recorded before the run
    t0 = time.perf_counter()
    code = cli(["train", str(SHARED), "--exclude", str(split), "--region", "cervical", "--out", str(args.out),
                "--steps", str(args.steps), "--synthetic-fraction", str(args.synthetic_fraction),
                "--synthetic-scans", str(args.synthetic_scans)])
    seconds = time.perf_counter() - t0
    if code:
        return code
    cfg = json.loads((args.out / "config.json").read_text())
    body = f"""## Cervical: training time

- command: `python -m benchmarks.train_cervical {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{commit}` (at the start)
- {args.synthetic_scans} synthetic phantoms ({args.synthetic_fraction:.0%} of crops) plus {len(cfg['training']['scans'])}
  real lumbar scans, {args.steps} steps of 16 crops: **{seconds / 60:.1f} min** wall time in all
  (of which phantoms + optimisation {cfg['training']['seconds'] / 60:.1f} min), 2-core CPU.
"""
    write_section(REPO / "docs" / "RESULTS.md", "cervical-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
