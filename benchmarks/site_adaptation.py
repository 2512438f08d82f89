"""Lumbar: what a hospital's own reviewed scans buy — a network from one source fine-tuned on a few of the other's.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.site_adaptation --networks DIR [--seeds 10,11] [--sizes 5,10] [--models OUT] [--jobs 2]

The seed paper's premise is that the labels radiologists already leave in PACS
are training data. A hospital whose scans spinelabel names badly can review a
few of them (``spinelabel review``) and fine-tune the model on them
(``spinelabel train --init``); it does not have our training scans. This
measures that path where our own generalisation is weakest, zukic -> myoseg
(leave one source out, ``benchmarks.lumbar_loso``): the zukic-only networks of
``DIR/seedN/zukic-only`` (trained there where missing) stand for the shipped
model, the MyoSegmenTUM scans for the hospital's.

- ``own N``: the network fine-tuned (``FINE_TUNE_STEPS`` steps at the shipped
  fine-tune's learning rate, phantoms and our S1 points as in every lumbar
  recipe) on N MyoSegmenTUM scans of the split's training part, drawn once
  (``adaptation_scans``: the N of a smaller size are among those of a larger);
  its shape model keeps the network's pairs that N scans cannot learn (step
  directions need 8; ``training.train.model_config``);
- ``source only``: the same fine-tune on the zukic training scans, so that
  more steps are not mistaken for the hospital's scans;
- ``as trained``: the network unchanged.

Every arm is tested on the same scans: every MyoSegmenTUM scan outside the
largest adaptation set (the split's validation part among them); match radius
20 mm. Writes the "lumbar-site-adaptation" section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.lumbar import REPO, SHARED, WARNING_CODE_HEAD, git_commit, warning_code_rows, write_section
from benchmarks.lumbar_loso import SPLIT, run_cli, score_model, seed_list, train_models
from benchmarks.train_lumbar import FINE_TUNE_LEARNING_RATE, ONE_STAGE_STEPS, annotated_s1_options, recipe_options

#: Fine-tune length: half the shipped model's fine-tune (2000 steps), a third of the networks' own training.
FINE_TUNE_STEPS = 1000
#: Seed of the one draw of adaptation scans (fixed: every arm and seed adapts to the same scans).
ADAPTATION_DRAW_SEED = 0
SOURCE, HOSPITAL = "zukic", "myoseg"


def adaptation_scans(size: int) -> list[str]:
    """The first ``size`` of one fixed shuffle of the hospital's scans in the split's training part."""
    train = [c for c in json.loads(SPLIT.read_text())["train"] if c.startswith(HOSPITAL)]
    order = np.random.default_rng(ADAPTATION_DRAW_SEED).permutation(len(train))
    if size > len(train):
        raise SystemExit(f"--sizes: at most {len(train)} {HOSPITAL} training scans, not {size}")
    return sorted(train[i] for i in order[:size])


def fine_tune_args(network: Path, cases: list[str], out: Path, threads: int, seed: int, tmp: Path) -> list[str]:
    """``spinelabel train`` arguments: ``network`` fine-tuned on ``cases`` only."""
    everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
    exclude = tmp / f"{out.name}.json"
    exclude.write_text(json.dumps({"validation": [c for c in everything if c not in cases]}))
    return ["train", str(SHARED), "--exclude", str(exclude), "--region", "lumbar", "--out", str(out),
            "--init", str(network), "--learning-rate", FINE_TUNE_LEARNING_RATE, *recipe_options(FINE_TUNE_STEPS),
            *annotated_s1_options(), "--threads", str(threads), "--seed", str(seed), "--quiet"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=Path, required=True, help="leave one source out's models, DIR/seedN/zukic-only")
    ap.add_argument("--seeds", type=seed_list, default=[10, 11])
    ap.add_argument("--sizes", type=seed_list, default=[5, 10], help="how many of the hospital's scans each arm adapts to")
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "spinelabel-site-adaptation")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run side by side (one thread each when > 1)")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    threads = 2 if args.jobs == 1 else 1
    networks = {seed: args.networks / f"seed{seed}" / f"{SOURCE}-only" for seed in args.seeds}
    own = {n: adaptation_scans(n) for n in args.sizes}
    sources = [c for c in json.loads(SPLIT.read_text())["train"] if c.startswith(SOURCE)]
    arms = {"source only": sources, **{f"own {n}": own[n] for n in args.sizes}}
    with tempfile.TemporaryDirectory(prefix="spinelabel-adapt-") as tmp:
        missing = [(seed, SOURCE, networks[seed]) for seed in args.seeds if not (networks[seed] / "config.json").is_file()]
        train_models(missing, ONE_STAGE_STEPS, args.jobs, Path(tmp))
        folder = {(seed, arm): args.models / f"seed{seed}" / arm.replace(" ", "-") for seed in args.seeds for arm in arms}
        jobs = [(fine_tune_args(networks[seed], arms[arm], folder[seed, arm], threads, seed, Path(tmp)),
                 f"fine-tune {arm} (seed {seed})") for (seed, arm) in folder if not (folder[seed, arm] / "config.json").is_file()]
        t0 = time.perf_counter()
        run_cli(jobs, args.jobs)
        minutes = (time.perf_counter() - t0) / 60

    test = sorted(p.name for p in SHARED.iterdir() if p.name.startswith(HOSPITAL) and p.name not in own[max(args.sizes)])
    lines, coded = [], []
    for seed in args.seeds:
        for arm, model in [("as trained", networks[seed]), *((a, folder[seed, a]) for a in arms)]:
            rows, _, scans = score_model(model, test)
            lines += [f"| {seed} | {arm} | {row} |" for row in rows]
            coded += scans
            print(lines[-2], flush=True)
    body = f"""## Lumbar: a hospital's own scans (site adaptation, zukic -> myoseg)

- command: `python -m benchmarks.site_adaptation {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the zukic-only networks of leave one source out (seeds {', '.join(map(str, args.seeds))}), each fine-tuned
  {FINE_TUNE_STEPS} steps (learning rate {FINE_TUNE_LEARNING_RATE}, phantoms 25 %, our S1 points) on: the zukic training
  scans (`source only`), or N MyoSegmenTUM training scans alone (`own N`: {'; '.join(f'{n}: {", ".join(own[n])}' for n in args.sizes)});
  {len(jobs)} fine-tunes in {minutes:.0f} min ({args.jobs} side by side, this machine's CPU).
- tested on the {len(test)} MyoSegmenTUM scans outside every adaptation set; match radius 20 mm.

| seed | arm | ground truth | identification | scans entirely right | sensitivity | precision | mean error | failures | wrong scans | flags |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

What the warning codes say, over every arm and scan above (T11/L1-L5 points):

{WARNING_CODE_HEAD}
{chr(10).join(warning_code_rows(coded))}
"""
    write_section(args.results, "lumbar-site-adaptation", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
