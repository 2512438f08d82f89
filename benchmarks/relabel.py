"""Lumbar: the chain model re-scored on cached candidates — labeling experiments in minutes, not half an hour.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.relabel cache SUITE OUT.pkl [--models DIR]
    python -m benchmarks.relabel score OUT.pkl [OUT2.pkl ...] [--set NAME=VALUE ...]

A labeling experiment (a cost, a latent, a check) changes nothing the network
computes, yet each benchmark runs the network again on every scan. ``cache``
runs it once and keeps every scan's candidates with its ground truth:

- ``heldout``: the shipped lumbar model on the split's validation scans;
- ``loso``: ``DIR/zukic-only`` on every MyoSegmenTUM scan and ``DIR/myoseg-only``
  on every Zukic scan (the layout of ``benchmarks.lumbar_loso --models DIR``);
- ``robustness``: the shipped model on each condition of ``benchmarks.robustness``
  (the same changes, drawn in the same order from the same seed).

``score`` names them again with ``LabelingParams`` fields overridden
(``--set anchor_weight=0.5 --set tilt_grid_deg="(0.0,)"``; values are Python
literals), applies the pipeline's spine check (``Labeler.check_spine``) and
prints, per network and condition, the scans entirely right, the wrong names
and those neither flagged (< 0.5) nor warned, as the benchmarks count them.
With no ``--set`` it reproduces the benchmarks' rows. One approximation: the
look beyond the chain's caudal end (``Labeler._look_beyond``) ran at cache time,
with the labeling of that time; its extra candidates are kept, not re-decided.
Measured only: nothing is written to docs/RESULTS.md; a setting that helps here
is confirmed by the benchmarks themselves before it ships. A cache is a pickle:
score only caches you made.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pickle
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks.lumbar import REPO, SHARED, flag_counts

S1_LABELS = REPO / "annotations" / "lumbar-s1.csv"
SPLIT = REPO / "benchmarks" / "lumbar_split.json"


def _cached(model: str, candidates: dict[str, list | None], truth: list) -> dict[str, object]:
    """One network's run (plain data, so that a pickle needs only spinelabel to load): the model it loads,
    scan -> candidates (None where the scan failed), the ground truth (``ScanAnnotation`` list)."""
    return {"model": model, "candidates": candidates, "truth": truth}


def _candidates(labeler, volume) -> list | None:
    """Every candidate the pipeline names for one volume (the look beyond the caudal end included);
    None when the pipeline fails on it (kept as a failure, as the benchmarks keep one)."""
    try:
        return labeler.detect_and_name(volume)[0]
    except Exception:  # a failure is a result
        return None


def _validation_truth() -> list:
    """The split's validation scans: the sources' points plus our S1 points (``ScanAnnotation`` list, split order)."""
    from spinelabel.annotations import add_labels, load_annotations

    cases = json.loads(SPLIT.read_text())["validation"]
    return add_labels(load_annotations([SHARED / c / "centroids.json" for c in cases]), load_annotations([S1_LABELS]))[0]


def _cache_heldout() -> dict[str, dict]:
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    truth = _validation_truth()
    cases = [a.scan_id for a in truth]
    labeler = Labeler.load("lumbar")
    found = {c: _candidates(labeler, load_image([SHARED / c / "image.nii.gz"]).volume) for c in cases}
    return {"heldout": _cached("lumbar", found, truth)}


def _cache_loso(models: Path) -> dict[str, dict]:
    from spinelabel.annotations import load_annotations
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    everything = sorted(p.name for p in SHARED.iterdir() if (p / "centroids.json").is_file())
    out = {}
    for train_on, test_on in (("zukic", "myoseg"), ("myoseg", "zukic")):
        model = models / f"{train_on}-only"
        labeler = Labeler.load(model)
        cases = [c for c in everything if c.startswith(test_on)]
        found = {c: _candidates(labeler, load_image([SHARED / c / "image.nii.gz"]).volume) for c in cases}
        truth = load_annotations([SHARED / c / "centroids.json" for c in cases])
        out[f"{train_on} -> {test_on}"] = _cached(str(model), found, truth)
    return out


def _cache_robustness() -> dict[str, dict]:
    from benchmarks.robustness import conditions
    from spinelabel.annotations import ScanAnnotation
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    gt = {a.scan_id: a for a in _validation_truth()}
    cases = list(gt)
    labeler = Labeler.load("lumbar")
    out = {}
    with tempfile.TemporaryDirectory(prefix="spinelabel-relabel-") as tmp:
        for name, change in conditions(Path(tmp), 0).items():  # seed 0: the benchmark's draws
            found, truth = {}, []
            for case in cases:
                volume, points = change(load_image([SHARED / case / "image.nii.gz"]).volume, dict(gt[case].points), case)
                truth.append(ScanAnnotation(case, None, points))
                found[case] = _candidates(labeler, volume)
            out[name] = _cached("lumbar", found, truth)
    return out


def _parse_sets(pairs: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs as LabelingParams overrides (values: Python literals)."""
    from spinelabel.labeling import LabelingParams

    fields = set(LabelingParams.__dataclass_fields__)
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE with NAME a LabelingParams field")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SystemExit(f"--set {pair!r}: {value!r} is not a Python literal") from None
    return out


def _relabel(labeler, candidates: list | None) -> tuple[list, dict[str, float], bool] | None:
    """Names, positions and confidences of one scan under the labeler's settings, whether warned; None when refused or failed."""
    from spinelabel.errors import NothingFoundError

    if candidates is None:
        return None
    result = labeler.name(candidates)
    try:
        labeler.check_spine(candidates, result)
    except NothingFoundError:
        return None
    names = [(v.label, v.position) for v in result.vertebrae]
    return names, {v.label: v.confidence for v in result.vertebrae}, bool(result.warnings)


def score(cached: dict[str, dict], overrides: dict[str, object]) -> list[dict[str, object]]:
    """One row per network or condition: scans right, wrong names, wrong names neither flagged nor warned."""
    from spinelabel.evaluation import evaluate
    from spinelabel.pipeline import Labeler

    labelers: dict[str, Labeler] = {}
    rows = []
    for key, run in cached.items():
        if run["model"] not in labelers:
            labeler = Labeler.load(run["model"])
            try:
                labeler.params = replace(labeler.params, **overrides)
            except (TypeError, ValueError) as exc:
                raise SystemExit(f"--set: {' '.join(str(exc).split())}") from None
            labelers[run["model"]] = labeler
        labeler = labelers[run["model"]]
        preds, conf, warned, refused = {}, {}, set(), []
        for case, candidates in run["candidates"].items():
            named = _relabel(labeler, candidates)
            if named is None:
                refused.append(case)
                continue
            preds[case], conf[case] = named[0], named[1]
            if named[2]:
                warned.add(case)
        report = evaluate(preds, run["truth"])
        n = flag_counts(report, conf, warned=warned)
        rows.append({
            "key": key, "right": report.n_scans_correct, "scans": report.n_scans, "wrong": n["wrong"],
            "unwarned": n["wrong"] - n["wrong_warned"], "right_warned": n["right_warned"], "names_right": n["right"],
            "wrong_scans": [r.scan_id for r in report.per_scan if not r.all_correct], "refused": refused,
        })
    return rows


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a sibling temporary file, renamed over it)."""
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise SystemExit(f"cache: cannot write {path}: {exc.strerror or exc}") from None


def _read_cache(path: Path) -> dict[str, dict]:
    """A cache that ``cache`` wrote; one line and exit 1 for anything else."""
    try:
        cached = pickle.loads(path.read_bytes())
    except OSError as exc:
        raise SystemExit(f"score: cannot read {path}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise SystemExit(f"score: {path} is not a cache of benchmarks.relabel ({type(exc).__name__})") from None
    if not isinstance(cached, dict) or not all(isinstance(r, dict) and "candidates" in r for r in cached.values()):
        raise SystemExit(f"score: {path} is not a cache of benchmarks.relabel")
    return cached


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="run the network once per scan and keep the candidates")
    c.add_argument("suite", choices=("heldout", "loso", "robustness"))
    c.add_argument("out", type=Path)
    c.add_argument("--models", type=Path, help="loso: the folder holding zukic-only/ and myoseg-only/")
    s = sub.add_parser("score", help="name cached candidates again, with LabelingParams overrides")
    s.add_argument("caches", type=Path, nargs="+")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)

    if args.command == "cache":
        if args.suite == "loso" and args.models is None:
            raise SystemExit("cache loso: --models DIR (with zukic-only/ and myoseg-only/) is needed")
        if not args.out.parent.is_dir():  # before the network runs, not after
            raise SystemExit(f"cache: {args.out.parent} is not a folder")
        cached = _cache_loso(args.models) if args.suite == "loso" else {
            "heldout": _cache_heldout, "robustness": _cache_robustness}[args.suite]()
        _write_whole(args.out, pickle.dumps(cached))
        print(f"wrote {args.out} ({sum(len(r['candidates']) for r in cached.values())} scans)")
        return 0
    overrides = _parse_sets(args.sets)
    total = {"right": 0, "scans": 0, "wrong": 0, "unwarned": 0}
    for path in args.caches:
        for row in score(_read_cache(path), overrides):
            print(f"{path.stem}: {row['key']:16s} {row['right']:2d}/{row['scans']} right, {row['wrong']:3d} wrong names, "
                  f"{row['unwarned']:2d} neither flagged nor warned, {row['right_warned']}/{row['names_right']} right "
                  f"names warned | {', '.join(row['wrong_scans']) or '—'}"
                  + (f" | refused: {', '.join(row['refused'])}" if row["refused"] else ""), flush=True)
            for k in total:
                total[k] += row[k]
    print(f"total: {total['right']}/{total['scans']} scans right, {total['wrong']} wrong names, "
          f"{total['unwarned']} neither flagged nor warned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
