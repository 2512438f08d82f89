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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "src" / "spinelabel" / "models" / "lumbar")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--synthetic-fraction", type=float, default=0.25)
    ap.add_argument("--synthetic-scans", type=int, default=80)
    args = ap.parse_args(argv)
    from spinelabel.cli import main as cli

    split = REPO / "benchmarks" / "lumbar_split.json"
    commit = git_commit()  # the code that trains, recorded before the run
    t0 = time.perf_counter()
    code = cli(["train", str(SHARED), "--exclude", str(split), "--out", str(args.out), "--steps", str(args.steps),
                "--synthetic-fraction", str(args.synthetic_fraction), "--synthetic-scans", str(args.synthetic_scans)])
    seconds = time.perf_counter() - t0
    if code:
        return code
    cfg = json.loads((args.out / "config.json").read_text())
    body = f"""## Lumbar: training time

- command: `python -m benchmarks.train_lumbar {' '.join(argv or sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{commit}` (at the start)
- {len(cfg['training']['scans'])} training scans plus {args.synthetic_scans} synthetic phantoms
  ({args.synthetic_fraction:.0%} of crops), {args.steps} steps of 16 crops: **{seconds / 60:.1f} min** wall time in all
  (of which phantoms + optimisation {cfg['training']['seconds'] / 60:.1f} min), 2-core CPU; target < 60 min.
"""
    write_section(REPO / "docs" / "RESULTS.md", "lumbar-training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
