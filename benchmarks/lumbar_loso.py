"""Lumbar: leave one source out — train on one hospital's scans, test on the other's.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.lumbar_loso [--steps 2500] [--models /tmp/spinelabel-lumbar-loso] [--retrain] [--jobs 2] [--seed 0]
    python -m benchmarks.lumbar_loso --seeds 10,11,12 --models DIR [--device cuda] [--jobs 6] [--precision bf16]

The shared lumbar scans come from two sources (Zukić et al.: T2 TSE, 1.5 T
Siemens; MyoSegmenTUM: 3 T Philips water-fat). A validation split drawn from
both overstates how the model does on a hospital it has never seen, so here:

- ``zukic -> myoseg``: trained from scratch on the zukic training scans (the
  split's validation scans stay out) plus phantoms, tested on all 50 myoseg scans;
- ``myoseg -> zukic``: trained on the myoseg training scans, tested on all 17 zukic scans.

Training uses the shipped recipe's data (phantoms 25 %, our S1 points in
``annotations/lumbar-s1.csv``, the caudal-segment augmentations) from a random
start, for ``--steps`` steps (the shipped model got 5000 + 2000). Scored twice:
against the sources' T11/L1-L5 points, and with our S1 points added. Writes the
"lumbar-loso" section of docs/RESULTS.md; with ``--seed N`` (N > 0) the same
recipe is trained again from another random start and written to its own
section, "lumbar-loso-seedN": the run-to-run spread that a recipe change must
exceed to count. With ``--seeds A,B,...`` every seed's pair (``DIR/seedN/``)
is trained where missing and scored, and one section, "lumbar-loso-seeds",
lists each seed's T11/L1-L5 row and the mean and range of scans right: the
distribution a recipe is judged by. ``--device cuda`` trains on a GPU (crops
are still drawn on the CPU: give each training a core, ``--jobs``). With
``--trained-on zukic`` (or ``myoseg``) only that direction is trained and
scored, into a section of its own: where one direction is hard (zukic ->
myoseg) more seeds of it are worth more than seeds of both. Every section ends
with the warning codes of the scans and the scans right by how much of S1 the
image shows (``annotations/lumbar-s1.csv``: whole, cut by the edge, not marked).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from benchmarks.cervical import _mm, _pct
from benchmarks.lumbar import REPO, SHARED, WARNING_CODE_HEAD, flag_stats, git_commit, warning_code_rows, write_section
from benchmarks.train_lumbar import annotated_s1_options, recipe_options
from spinelabel.training.train import PRECISIONS

SPLIT = REPO / "benchmarks" / "lumbar_split.json"
S1_LABELS = REPO / "annotations" / "lumbar-s1.csv"
SOURCES = ("zukic", "myoseg")


def _train_args(
    source: str, out: Path, steps: int, threads: int, tmp: Path, seed: int = 0, device: str = "cpu",
    precision: str = "fp32",
) -> list[str]:
    """``spinelabel train`` arguments for the split's training scans of one source."""
    split = json.loads(SPLIT.read_text())
    everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
    keep = [c for c in split["train"] if c.startswith(source)]
    exclude = tmp / f"only-{source}.json"
    exclude.write_text(json.dumps({"validation": [c for c in everything if c not in keep]}))
    return ["train", str(SHARED), "--exclude", str(exclude), "--region", "lumbar", "--out", str(out),
            *recipe_options(steps), *annotated_s1_options(), "--threads", str(threads), "--seed", str(seed),
            "--device", device, "--precision", precision, "--quiet"]


def run_cli(runs: list[tuple[list[str], str]], parallel: int) -> list[float]:
    """Run ``spinelabel`` with each (arguments, what a failure names), ``parallel`` side by side; minutes per run.

    A failed run ends the benchmark with one line (``SystemExit``).
    """
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def one(run: tuple[list[str], str]) -> float:
        args, what = run
        t0 = time.perf_counter()
        if subprocess.call([sys.executable, "-m", "spinelabel.cli", *args]):
            raise SystemExit(f"{what} failed")
        return (time.perf_counter() - t0) / 60

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        return list(pool.map(one, runs))


def train_models(
    todo: list[tuple[int, str, Path]], steps: int, jobs: int, tmp: Path, device: str = "cpu", precision: str = "fp32"
) -> dict[str, float]:
    """Train one model per (seed, source, model folder), ``jobs`` side by side (one thread each when > 1);
    minutes per model."""
    threads = 2 if jobs == 1 else 1
    runs = []
    for seed, source, out in todo:
        work = tmp / f"seed{seed}"
        work.mkdir(exist_ok=True)
        runs.append((_train_args(source, out, steps, threads, work, seed, device, precision),
                     f"training on {source} (seed {seed})"))
    return {f"{source} seed {seed}": m for (seed, source, _), m in zip(todo, run_cli(runs, jobs))}


class Outcome(NamedTuple):
    """One tested scan: its id, its warning codes (None: refused, no labeling) and whether every T11/L1-L5 name
    is right (a refused scan is not)."""

    scan_id: str
    codes: list[str] | None
    right: bool


Coded = list[Outcome]

#: How much of S1 the image shows, by the ``visibility`` column of ``annotations/lumbar-s1.csv``
#: (docs/annotations.md): a scan without a row there has S1 below the image edge or not identifiable.
S1_VIEWS = {"full": "whole in view", "partial": "partly cut by the image edge",
            None: "not marked (below the image edge, or not identifiable)"}


def labeled(scans: Coded) -> list[tuple[list[str], bool]]:
    """(warning codes, right) of the scans that were labeled, for ``benchmarks.lumbar.warning_code_rows``."""
    return [(s.codes, s.right) for s in scans if s.codes is not None]


def s1_visibility(path: Path = S1_LABELS) -> dict[str, str]:
    """Scan id -> our S1 point's visibility ("full" or "partial")."""
    with path.open(newline="") as f:
        return {row["scan"]: row["visibility"] for row in csv.DictReader(f)}


def s1_view_rows(scans: Coded, visibility: dict[str, str]) -> list[str]:
    """Table rows: scans entirely right (T11/L1-L5), grouped by how much of S1 the image shows.

    ``scans`` may hold one scan several times (one per model); each counts.
    """
    tested, right = Counter(), Counter()
    for s in scans:
        view = visibility.get(s.scan_id)
        tested[view] += 1
        right[view] += s.right
    return [
        f"| {text} | {tested[v]} | {right[v]} ({_pct(right[v] / tested[v])}) |" for v, text in S1_VIEWS.items() if tested[v]
    ]


def score_model(model: Path, cases: list[str]) -> tuple[tuple[str, str], int, Coded]:
    """The scoring rows (T11/L1-L5; with our S1) of one model on ``cases``, its T11/L1-L5 scans entirely right,
    and every case's ``Outcome`` (its warning codes, None where it was refused, and whether it is right)."""
    from spinelabel.annotations import add_labels, load_annotations
    from spinelabel.evaluation import evaluate, report_to_dict
    from spinelabel.io import load_image
    from spinelabel.pipeline import make_labeler
    from spinelabel.warning_codes import codes

    labeler = make_labeler("lumbar", model)
    preds, conf, warned, failures, coded = {}, {}, set(), [], {}
    for case in cases:
        try:
            result = labeler.label(load_image([SHARED / case / "image.nii.gz"]).volume)
        except Exception as exc:  # a failure is a result
            failures.append(f"{case}: {str(exc).splitlines()[0]}")
            continue
        preds[case] = [(v.label, v.position_mm) for v in result.vertebrae]
        conf[case] = {v.label: v.confidence for v in result.vertebrae}
        coded[case] = codes(result.warnings)
        if result.warnings:
            warned.add(case)
    gt = load_annotations([SHARED / c / "centroids.json" for c in cases])
    rows, right, per_scan = [], [], []  # right: scans entirely right, per ground truth
    for name, truth in (("T11/L1-L5", gt), ("with our S1", add_labels(gt, load_annotations([S1_LABELS]))[0])):
        rep = evaluate(preds, truth)
        o = report_to_dict(rep)["overall"]
        right.append(o["n_scans_correct"])
        per_scan = per_scan or [Outcome(r.scan_id, coded.get(r.scan_id), r.all_correct) for r in rep.per_scan]
        wrong = [r.scan_id for r in rep.per_scan if not r.all_correct]
        rows.append(
            f"{name} | {_pct(o['identification_rate'])} ({o['n_identified']}/{o['n_gt']}) | "
            f"{o['n_scans_correct']}/{o['n_scans']} | {_pct(o['sensitivity'])} | {_pct(o['precision'])} | "
            f"{_mm(o['error_mm']['mean'])} mm | {'; '.join(failures) or '—'} | {', '.join(wrong) or '—'} | "
            f"{flag_stats(rep, conf, warned=warned)}"
        )
    return (rows[0], rows[1]), right[0], per_scan  # the T11/L1-L5 count: the sources' own points


def _direction(model: Path, train_on: str, everything: list[str]) -> tuple[list[str], int, Coded]:
    """Table lines (T11/L1-L5; with our S1) of a model trained on ``train_on``, tested on the other source, its
    T11/L1-L5 scans entirely right and its scans' warning codes (``score_model``)."""
    test_on = next(s for s in SOURCES if s != train_on)
    n_train = len(json.loads((model / "config.json").read_text())["training"]["scans"])
    cases = [c for c in everything if c.startswith(test_on)]
    rows, right, coded = score_model(model, cases)
    lines = [f"| {train_on} ({n_train} scans) -> {test_on} ({len(cases)} scans) | {row} |" for row in rows]
    for line in lines:
        print(line, flush=True)
    return lines, right, coded


def _one_thread() -> None:
    import os

    os.environ["SPINELABEL_THREADS"] = "1"  # read when each worker loads its labeler


def _score_all(models: list[tuple[Path, str]], everything: list[str], jobs: int) -> list[tuple[list[str], int, Coded]]:
    """``_direction`` of each (model folder, source trained on), ``jobs`` processes side by side (one thread each when > 1)."""
    if jobs <= 1:
        return [_direction(model, src, everything) for model, src in models]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, initializer=_one_thread) as pool:
        return list(pool.map(_direction, *zip(*models), [everything] * len(models)))


def _seeds_summary(right: dict[tuple[int, str], int]) -> str:
    """Mean and range of scans right per direction and, when both were run, summed, over the seeds."""
    seeds = sorted({seed for seed, _ in right})
    trained = {src for _, src in right}
    sources = [src for src in SOURCES if src in trained]
    per = {src: [right[seed, src] for seed in seeds] for src in sources}
    if len(sources) > 1:
        per["both"] = [sum(right[seed, src] for src in sources) for seed in seeds]
    names = {"zukic": "zukic -> myoseg", "myoseg": "myoseg -> zukic", "both": "both directions"}
    return "; ".join(f"{names[k]} mean {sum(v) / len(v):.1f} (range {min(v)}-{max(v)})" for k, v in per.items())


def seed_list(text: str) -> list[int]:
    """``--seeds``: "10,11,12" -> [10, 11, 12]; argparse reports anything else in one line."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers expected, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed named twice in {text!r}")
    return seeds


def _check_reused(models: list[Path], precision: str) -> None:
    """Refuse (one line, exit status 1) to score a reused model trained in another arithmetic than ``precision``:
    its rows would land in the other arithmetic's section."""
    for model in models:
        settings = json.loads((model / "config.json").read_text()).get("training", {}).get("settings", {})
        trained = settings.get("precision", "fp32")  # models from before the option are fp32
        if trained != precision:
            raise SystemExit(f"{model} was trained in {trained}, not {precision}: give --retrain or another --models")


def _section(
    seeds: list[int] | None, seed: int, precision: str, sources: tuple[str, ...] = SOURCES
) -> tuple[str, str, str]:
    """Title suffix, RESULTS key and seed text of a run: one section per seed list, single seed, arithmetic
    and direction.

    A precision other than fp32 is another arm of the recipe: its rows go to a section of their own
    and never replace the fp32 ones that recipe changes are judged against. So does a run of one direction
    (``--trained-on``): it never replaces a section of both.
    """
    if seeds:
        title, key, seed_text = ", several training seeds", "lumbar-loso-seeds", f"seeds {','.join(map(str, seeds))}"
    else:
        title, key = ("", "lumbar-loso") if not seed else (f", training seed {seed}", f"lumbar-loso-seed{seed}")
        seed_text = f"seed {seed}"
    if precision != "fp32":
        title, key, seed_text = f"{title}, {precision} training", f"{key}-{precision}", f"{seed_text}, {precision}"
    if tuple(sources) != SOURCES:
        title, key = f"{title}, trained on {' and '.join(sources)} only", f"{key}-{'-'.join(sources)}-only"
    return title, key, seed_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "spinelabel-lumbar-loso")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="trainings (and scorings) run side by side (one thread each when > 1)")
    ap.add_argument("--seed", type=int, default=0, help="training seed; N > 0 writes section lumbar-loso-seedN")
    ap.add_argument("--seeds", type=seed_list, default=None,
                    help="comma-separated seeds, models in MODELS/seedN: section lumbar-loso-seeds")
    ap.add_argument("--device", default="cpu", help="torch device of the trainings (cpu, cuda)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="arithmetic of the trainings (spinelabel train --precision); not fp32: sections of their own")
    ap.add_argument("--trained-on", choices=SOURCES, default=None,
                    help="train and score only the models trained on this source (default: both directions)")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    seeds = args.seeds or [args.seed]
    sources = (args.trained_on,) if args.trained_on else SOURCES

    def folder(seed: int, source: str) -> Path:
        return (args.models / f"seed{seed}" if args.seeds else args.models) / f"{source}-only"

    everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
    with tempfile.TemporaryDirectory(prefix="spinelabel-loso-") as tmp:
        todo = [(seed, src, folder(seed, src)) for seed in seeds for src in sources
                if args.retrain or not (folder(seed, src) / "config.json").is_file()]
        _check_reused([folder(seed, src) for seed in seeds for src in sources if (seed, src, folder(seed, src)) not in todo],
                      args.precision)
        minutes = train_models(todo, args.steps, args.jobs, Path(tmp), args.device, args.precision)
    jobs = [(seed, src) for seed in seeds for src in sources]
    scored = _score_all([(folder(seed, src), src) for seed, src in jobs], everything, args.jobs)
    lines, right, coded = [], {}, []
    for (seed, src), (rows, right[seed, src], scans) in zip(jobs, scored):
        lines += [f"| {seed} {row}" for row in rows[:1]] if args.seeds else rows
        coded += scans
    took = ", ".join(f"{k}: {v:.1f} min" for k, v in minutes.items()) or "models reused"
    title, key, seed_text = _section(args.seeds, args.seed, args.precision, sources)
    if args.seeds:
        head = "| seed | trained on -> tested on | ground truth |"
        extra = f"- scans entirely right (T11/L1-L5) over {len(seeds)} seeds: {_seeds_summary(right)}.\n"
    else:
        head, extra = "| trained on -> tested on | ground truth |", ""
    body = f"""## Lumbar: leave one source out{title}

- command: `python -m benchmarks.lumbar_loso {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- each model trained from scratch ({seed_text}) for {args.steps} steps on one source's training scans plus phantoms (25 %) and
  our S1 points ({took}); tested on every scan of the other source; match radius 20 mm.
{extra}
{head} identification | scans entirely right | sensitivity | precision | mean error | failures | wrong scans | flags |
|{'---|' * (head.count('|') - 1 + 8)}
{chr(10).join(lines)}

What the warning codes say (docs/output-format.md), over every model and scan above (T11/L1-L5 points; refused
scans left out): a scan is wrong when it is not entirely right (a name wrong, a vertebra missed or a false one).

{WARNING_CODE_HEAD}
{chr(10).join(warning_code_rows(labeled(coded)))}

Scans entirely right (T11/L1-L5) by how much of S1 the image shows (our S1 points, docs/annotations.md), over
every model above (a scan tested by several models counts once per model; refused scans count as wrong):

| S1 | scans tested | entirely right |
|---|---|---|
{chr(10).join(s1_view_rows(coded, s1_visibility()))}
"""
    write_section(args.results, key, body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
