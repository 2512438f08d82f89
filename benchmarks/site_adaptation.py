"""Lumbar: what a hospital's own reviewed scans buy — a network from one source fine-tuned on a few of the other's.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.site_adaptation --networks DIR [--seeds 10,11] [--sizes 5,10] [--unreviewed 10] [--draw 0] [--models OUT] [--jobs 2]

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
  (``adaptation_scans``: the N of a smaller size are among those of a larger;
  ``--draw N`` another draw, written to section "lumbar-site-adaptation-drawN");
  its shape model keeps the network's pairs that N scans cannot learn (step
  directions need 8; ``training.train.model_config``);
- ``unreviewed N``: the same fine-tune on the network's own answers on the N
  scans, nobody having reviewed them (self-training), a scan kept when none of
  its warnings says the count may be wrong (``unreviewed_labels``): whether
  the review is what the gain needs;
- ``source only``: the same fine-tune on the zukic training scans, so that
  more steps are not mistaken for the hospital's scans;
- ``as trained``: the network unchanged.

Every arm is tested on the same scans: every MyoSegmenTUM scan outside the
largest adaptation set (the split's validation part among them); match radius
20 mm. Forgetting: every arm is also scored on the zukic scans of the split's
validation part, which no arm trained on (a fine-tune on the hospital's scans
alone may name the scans it was first trained for worse). Fine-tuned models
already in ``--models`` are scored, not trained again. Writes the
"lumbar-site-adaptation" section of docs/RESULTS.md.
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
from benchmarks.lumbar_loso import SPLIT, labeled, run_cli, score_model, seed_list, train_models
from benchmarks.train_lumbar import FINE_TUNE_LEARNING_RATE, ONE_STAGE_STEPS, annotated_s1_options, recipe_options
from spinelabel.cli_train import FINE_TUNE

#: Fine-tune length: half the shipped model's fine-tune (2000 steps), a third of the networks' own training; what
#: ``spinelabel train --init`` takes by default (``cli_train.FINE_TUNE``, set from this benchmark's runs).
FINE_TUNE_STEPS = FINE_TUNE.steps
#: Seed of the default draw of adaptation scans (fixed: every arm and seed adapts to the same scans;
#: ``--draw N`` measures another draw, in section "lumbar-site-adaptation-drawN").
ADAPTATION_DRAW_SEED = 0
SOURCE, HOSPITAL = "zukic", "myoseg"
#: Scan id suffix of the unreviewed arm's own labels (keeps them apart from every person's label of the scan).
UNREVIEWED_SUFFIX = "-unreviewed"
#: Decimals (mm) of the unreviewed arm's points: a micrometre, the precision the runs in docs/RESULTS.md trained on.
UNREVIEWED_DECIMALS = 3


def adaptation_scans(size: int, draw: int = ADAPTATION_DRAW_SEED) -> list[str]:
    """The first ``size`` of one fixed shuffle (seeded by ``draw``) of the hospital's scans in the split's training part."""
    train = [c for c in json.loads(SPLIT.read_text())["train"] if c.startswith(HOSPITAL)]
    order = np.random.default_rng(draw).permutation(len(train))
    if size > len(train):
        raise SystemExit(f"--sizes, --unreviewed: at most {len(train)} {HOSPITAL} training scans, not {size}")
    return sorted(train[i] for i in order[:size])


def source_held_out() -> list[str]:
    """The source's scans in the split's validation part: trained on by no arm, so they measure forgetting."""
    return sorted(c for c in json.loads(SPLIT.read_text())["validation"] if c.startswith(SOURCE))


def score_arms(models: dict[tuple[int, str], Path], cases: list[str]) -> tuple[list[str], list]:
    """Table lines (seed | arm | row, both ground truths) of every model on ``cases``, and each scan's warning codes."""
    lines, coded = [], []
    for (seed, arm), model in models.items():
        rows, _, scans = score_model(model, cases)
        lines += [f"| {seed} | {arm} | {row} |" for row in rows]
        coded += labeled(scans)
        print(lines[-2], flush=True)
    return lines, coded


def unreviewed_labels(network: Path, cases: list[str], out_csv: Path) -> list[str]:
    """Write ``network``'s own names of ``cases`` as a training CSV; the cases kept.

    A scan is kept when it is labeled and no warning has the ``count`` concern
    (the warnings the product gives for "check the count"); its confidences are
    not asked, as the names of another source's scans sit at 0.2-0.7 right or
    wrong. Its scan id gets ``UNREVIEWED_SUFFIX``, so that our S1 points
    (``--extra-labels``) do not join it: no person's label of these scans is used.
    """
    from spinelabel.annotations import save_annotations_csv
    from spinelabel.io import load_image
    from spinelabel.pipeline import make_labeler
    from spinelabel.scan_annotation import ScanAnnotationBuilder
    from spinelabel.warning_codes import count_at_risk

    labeler = make_labeler("lumbar", network)
    scans = []
    for case in cases:
        image = SHARED / case / "image.nii.gz"
        try:
            result = labeler.label(load_image([image]).volume)
        except Exception:  # a scan the network cannot label gives no labels
            continue
        if result.vertebrae and not count_at_risk(result.warnings):
            scan = ScanAnnotationBuilder(f"{case}{UNREVIEWED_SUFFIX}", image, out_csv)
            for v in result.vertebrae:
                scan.add(v.label, np.round(v.position_mm, UNREVIEWED_DECIMALS))
            scans.append(scan.build())
    save_annotations_csv(scans, out_csv)
    return [s.scan_id.removesuffix(UNREVIEWED_SUFFIX) for s in scans]


def fine_tune_args(
    network: Path, data: list[str] | Path, out: Path, threads: int, seed: int, tmp: Path
) -> list[str]:
    """``spinelabel train`` arguments: ``network`` fine-tuned on the shared scans ``data`` only, or on the CSV ``data``."""
    if isinstance(data, Path):
        source = [str(data)]
    else:
        everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
        exclude = tmp / f"{out.parent.name}-{out.name}.json"
        exclude.write_text(json.dumps({"validation": [c for c in everything if c not in data]}))
        source = [str(SHARED), "--exclude", str(exclude)]
    return ["train", *source, "--region", "lumbar", "--out", str(out),
            "--init", str(network), "--learning-rate", FINE_TUNE_LEARNING_RATE, *recipe_options(FINE_TUNE_STEPS),
            *annotated_s1_options(), "--threads", str(threads), "--seed", str(seed), "--quiet"]


def add_unreviewed(
    data: dict[tuple[int, str], list[str] | Path], networks: dict[int, Path], size: int, draw: int, tmp: Path
) -> dict[int, list[str]]:
    """Add each seed's ``unreviewed SIZE`` arm to ``data`` (none where no scan is kept); the scans kept per seed."""
    kept = {}
    for seed in networks if size else []:
        labels = tmp / f"seed{seed}-unreviewed.csv"
        kept[seed] = unreviewed_labels(networks[seed], adaptation_scans(size, draw), labels)
        if kept[seed]:  # nothing kept: no such arm for this seed (said in the section)
            data[seed, f"unreviewed {size}"] = labels
    return kept


def train_arms(
    networks: dict[int, Path], data: dict[tuple[int, str], list[str] | Path], models: Path, jobs: int, tmp: Path
) -> tuple[dict[tuple[int, str], Path], int, float]:
    """Each (seed, arm)'s fine-tune of its seed's network on its ``data``, trained where not yet in ``models``:
    the fine-tunes' folders, how many ran, and their minutes in all."""
    threads = 2 if jobs == 1 else 1
    folder = {(seed, arm): models / f"seed{seed}" / arm.replace(" ", "-") for seed, arm in data}
    runs = [(fine_tune_args(networks[seed], data[seed, arm], out, threads, seed, tmp), f"fine-tune {arm} (seed {seed})")
            for (seed, arm), out in folder.items() if not (out / "config.json").is_file()]
    t0 = time.perf_counter()
    run_cli(runs, jobs)
    return folder, len(runs), (time.perf_counter() - t0) / 60


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=Path, required=True, help="leave one source out's models, DIR/seedN/zukic-only")
    ap.add_argument("--seeds", type=seed_list, default=[10, 11])
    ap.add_argument("--sizes", type=seed_list, default=[5, 10], help="how many of the hospital's scans each arm adapts to")
    ap.add_argument("--unreviewed", type=int, default=10, help="the scans the unreviewed arm labels itself (0: no such arm)")
    ap.add_argument("--draw", type=int, default=ADAPTATION_DRAW_SEED,
                    help="seed of the draw of adaptation scans; another draw needs its own --models (source only may be linked)")
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "spinelabel-site-adaptation")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run side by side (one thread each when > 1)")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    networks = {seed: args.networks / f"seed{seed}" / f"{SOURCE}-only" for seed in args.seeds}
    own = {n: adaptation_scans(n, args.draw) for n in args.sizes}
    adapted = adaptation_scans(max([*args.sizes, args.unreviewed]), args.draw)  # checked before any training
    sources = [c for c in json.loads(SPLIT.read_text())["train"] if c.startswith(SOURCE)]
    arms = {"source only": sources, **{f"own {n}": own[n] for n in args.sizes}}
    data: dict[tuple[int, str], list[str] | Path] = {(seed, arm): arms[arm] for seed in args.seeds for arm in arms}
    with tempfile.TemporaryDirectory(prefix="spinelabel-adapt-") as tmp:
        missing = [(seed, SOURCE, net) for seed, net in networks.items() if not (net / "config.json").is_file()]
        train_models(missing, ONE_STAGE_STEPS, args.jobs, Path(tmp))  # first: the unreviewed arm labels with them
        kept = add_unreviewed(data, networks, args.unreviewed, args.draw, Path(tmp))
        folder, trained, minutes = train_arms(networks, data, args.models, args.jobs, Path(tmp))
    test = sorted(p.name for p in SHARED.iterdir() if p.name.startswith(HOSPITAL) and p.name not in adapted)
    models = {key: model for seed in args.seeds for key, model in
              [((seed, "as trained"), networks[seed]), *((k, f) for k, f in folder.items() if k[0] == seed)]}
    lines, coded = score_arms(models, test)
    forgetting, _ = score_arms(models, source_held_out())
    draw = f", draw {args.draw}" if args.draw != ADAPTATION_DRAW_SEED else ""
    body = f"""## Lumbar: a hospital's own scans (site adaptation, zukic -> myoseg{draw})

- command: `python -m benchmarks.site_adaptation {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the zukic-only networks of leave one source out (seeds {', '.join(map(str, args.seeds))}), each fine-tuned
  {FINE_TUNE_STEPS} steps (learning rate {FINE_TUNE_LEARNING_RATE}, phantoms 25 %, our S1 points) on: the zukic training
  scans (`source only`), or N MyoSegmenTUM training scans alone (`own N`: {'; '.join(f'{n}: {", ".join(own[n])}' for n in args.sizes)});
  {trained} fine-tunes in {minutes:.0f} min ({args.jobs} side by side, this machine's CPU; fine-tunes already in
  `--models` are scored, not trained again).
- `unreviewed {args.unreviewed}`: the network's own names of the first {args.unreviewed} scans of the same draw, nobody
  having reviewed them, a scan kept where no warning doubts the count: {'; '.join(f'seed {seed}: {", ".join(kept[seed]) or "none (no such arm)"}' for seed in kept) or 'no such arm'}.
- tested on the {len(test)} MyoSegmenTUM scans outside every adaptation set; match radius 20 mm.

| seed | arm | ground truth | identification | scans entirely right | sensitivity | precision | mean error | failures | wrong scans | flags |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

What the warning codes say, over every arm and scan above (T11/L1-L5 points):

{WARNING_CODE_HEAD}
{chr(10).join(warning_code_rows(coded))}

Forgetting: the same models on the {SOURCE} scans of the split's validation part ({', '.join(source_held_out())}),
which none of them trained on.

| seed | arm | ground truth | identification | scans entirely right | sensitivity | precision | mean error | failures | wrong scans | flags |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(forgetting)}
"""
    write_section(args.results, f"lumbar-site-adaptation{draw.replace(', draw ', '-draw')}", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
