"""Lumbar: leave one source out — train on one hospital's scans, test on the other's.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.lumbar_loso [--steps 2500] [--models /tmp/spinelabel-lumbar-loso] [--retrain] [--jobs 2] [--seed 0]

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
exceed to count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cervical import _mm, _pct
from benchmarks.lumbar import REPO, SHARED, flag_stats, git_commit, write_section

SPLIT = REPO / "benchmarks" / "lumbar_split.json"
S1_LABELS = REPO / "annotations" / "lumbar-s1.csv"
SOURCES = ("zukic", "myoseg")


def _train_args(source: str, out: Path, steps: int, threads: int, tmp: Path, seed: int = 0) -> list[str]:
    """``spinelabel train`` arguments for the split's training scans of one source."""
    split = json.loads(SPLIT.read_text())
    everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
    keep = [c for c in split["train"] if c.startswith(source)]
    exclude = tmp / f"only-{source}.json"
    exclude.write_text(json.dumps({"validation": [c for c in everything if c not in keep]}))
    return ["train", str(SHARED), "--exclude", str(exclude), "--region", "lumbar", "--out", str(out),
            "--steps", str(steps), "--synthetic-fraction", "0.25", "--synthetic-scans", "80",
            "--extra-labels", str(S1_LABELS), "--no-complete-anchors", "--threads", str(threads), "--seed", str(seed),
            "--quiet"]


def _train_all(sources: list[str], models: Path, steps: int, jobs: int, tmp: Path, seed: int = 0) -> dict[str, float]:
    """Train one model per source, ``jobs`` side by side (one thread each when > 1); minutes per source."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    threads = 2 if jobs == 1 else 1

    def one(source: str) -> float:
        cmd = [sys.executable, "-m", "spinelabel.cli", *_train_args(source, models / f"{source}-only", steps, threads, tmp, seed)]
        t0 = time.perf_counter()
        if subprocess.call(cmd):
            raise SystemExit(f"training on {source} failed")
        return (time.perf_counter() - t0) / 60

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return dict(zip(sources, pool.map(one, sources)))


def _score(model: Path, cases: list[str]) -> tuple[str, str]:
    from spinelabel.annotations import add_labels, load_annotations
    from spinelabel.evaluation import evaluate, report_to_dict
    from spinelabel.io import load_image
    from spinelabel.pipeline import make_labeler

    labeler = make_labeler("lumbar", model)
    preds, conf, warned, failures = {}, {}, set(), []
    for case in cases:
        try:
            result = labeler.label(load_image([SHARED / case / "image.nii.gz"]).volume)
        except Exception as exc:  # a failure is a result
            failures.append(f"{case}: {str(exc).splitlines()[0]}")
            continue
        preds[case] = [(v.label, v.position_mm) for v in result.vertebrae]
        conf[case] = {v.label: v.confidence for v in result.vertebrae}
        if result.warnings:
            warned.add(case)
    gt = load_annotations([SHARED / c / "centroids.json" for c in cases])
    rows = []
    for name, truth in (("T11/L1-L5", gt), ("with our S1", add_labels(gt, load_annotations([S1_LABELS]))[0])):
        rep = evaluate(preds, truth)
        o = report_to_dict(rep)["overall"]
        wrong = [r.scan_id for r in rep.per_scan if not r.all_correct]
        rows.append(
            f"{name} | {_pct(o['identification_rate'])} ({o['n_identified']}/{o['n_gt']}) | "
            f"{o['n_scans_correct']}/{o['n_scans']} | {_pct(o['sensitivity'])} | {_pct(o['precision'])} | "
            f"{_mm(o['error_mm']['mean'])} mm | {'; '.join(failures) or '—'} | {', '.join(wrong) or '—'} | "
            f"{flag_stats(rep, conf, warned=warned)}"
        )
    return rows[0], rows[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "spinelabel-lumbar-loso")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run side by side (one thread each when > 1)")
    ap.add_argument("--seed", type=int, default=0, help="training seed; N > 0 writes section lumbar-loso-seedN")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
    lines = []
    with tempfile.TemporaryDirectory(prefix="spinelabel-loso-") as tmp:
        todo = [s for s in SOURCES if args.retrain or not (args.models / f"{s}-only" / "config.json").is_file()]
        minutes = _train_all(todo, args.models, args.steps, args.jobs, Path(tmp), args.seed)
        for train_on in SOURCES:
            test_on = next(s for s in SOURCES if s != train_on)
            model = args.models / f"{train_on}-only"
            n_train = len(json.loads((model / "config.json").read_text())["training"]["scans"])
            cases = [c for c in everything if c.startswith(test_on)]
            for row in _score(model, cases):
                lines.append(f"| {train_on} ({n_train} scans) -> {test_on} ({len(cases)} scans) | {row} |")
                print(lines[-1], flush=True)
    took = ", ".join(f"{k}: {v:.1f} min" for k, v in minutes.items()) or "models reused"
    title, key = ("", "lumbar-loso") if not args.seed else (f", training seed {args.seed}", f"lumbar-loso-seed{args.seed}")
    body = f"""## Lumbar: leave one source out{title}

- command: `python -m benchmarks.lumbar_loso {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- each model trained from scratch (seed {args.seed}) for {args.steps} steps on one source's training scans plus phantoms (25 %) and
  our S1 points ({took}); tested on every scan of the other source; match radius 20 mm.

| trained on -> tested on | ground truth | identification | scans entirely right | sensitivity | precision | mean error | failures | wrong scans | flags |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}
"""
    write_section(args.results, key, body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
