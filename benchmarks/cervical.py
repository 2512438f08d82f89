"""Cervical benchmark: held-out synthetic cervical scans, and --region auto on real and synthetic scans.

Usage (from the repository root, with ../shared beside it)::

    python -m benchmarks.cervical [--model cervical] [--n 30] [--seed 1000]

Accuracy is measured on synthetic phantoms drawn with a seed the training
never used (training draws its phantom pool from seed 0 with a different
random stream); real cervical MR is measured by ``benchmarks.cervical_real``
and ``benchmarks.cervical_robustness``. Also measured: whether ``--region
auto`` picks "lumbar" on every shared lumbar scan and "cervical" on the real
and synthetic cervical ones, also when the real scans' contrast is changed
as in ``benchmarks.robustness`` (inverted, T1-like, T1-like with the air dark, STIR-like; lumbar: the
held-out split). Writes docs/RESULTS.md and overlay pictures in docs/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.lumbar import REPO, SHARED, flag_stats, git_commit, write_section

#: Matching radius for cervical vertebrae (mm): about half the 15-20 mm spacing (docs/evaluation.md).
CERVICAL_RADIUS_MM = 10.0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def _mm(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _label_all(labeler, images: dict[str, Path]):
    from spinelabel.io import load_image

    preds, times, failures, results = {}, [], [], {}
    for case, image in images.items():
        t = time.perf_counter()
        try:
            result = labeler.label(load_image([image]).volume)
            preds[case] = [(v.label, v.position_mm) for v in result.vertebrae]
            results[case] = result
        except Exception as exc:  # a failure is a benchmark result, not a crash
            failures.append(f"{case}: {exc}")
        times.append(time.perf_counter() - t)
    return preds, times, failures, results


def _auto_choices(auto, images: dict[str, Path], change=None) -> dict[str, str]:
    """Case -> the region ``auto`` chooses for its image (``change``d first, when given), or the error."""
    from spinelabel.io import load_image

    out = {}
    for case, image in images.items():
        try:
            volume = load_image([image]).volume
            out[case] = auto.choose_region(change(volume) if change else volume)
        except Exception as exc:
            out[case] = f"error: {exc}"
    return out


def _contrast_changes(seed: int) -> dict[str, Callable]:
    """The contrast variants of ``benchmarks.robustness`` as volume -> volume."""
    from benchmarks.robustness import contrast, inverted, t1_dark_air

    rng = np.random.default_rng(seed)
    return {
        "inverted": lambda v: inverted(v, {})[0],
        "t1-like": lambda v: contrast(v, {}, True, rng)[0],
        "t1-like-dark-air": lambda v: t1_dark_air(v, {})[0],
        "stir-like": lambda v: contrast(v, {}, False, rng)[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cervical")
    ap.add_argument("--n", type=int, default=30, help="synthetic cervical scans")
    ap.add_argument("--n-whole", type=int, default=6, help="synthetic whole-spine scans")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    ap.add_argument("--overlay-dir", type=Path, default=REPO / "docs", help="where the example overlays go")
    ap.add_argument("--no-auto", action="store_true", help="skip the --region auto part")
    args = ap.parse_args(argv)
    args.overlay_dir.mkdir(parents=True, exist_ok=True)

    from spinelabel.annotations import load_annotations
    from spinelabel.evaluation import evaluate, format_report, report_to_dict
    from spinelabel.io import load_image
    from spinelabel.io.outputs import render_overlay
    from spinelabel.models import resolve_model_dir
    from spinelabel.pipeline import AutoLabeler, Labeler
    from spinelabel.synthetic_cases import write_synthetic_cases

    tmp = Path(tempfile.mkdtemp(prefix="spinelabel-cervical-"))
    cerv_cases = write_synthetic_cases(tmp / "cervical", args.n, "cervical", args.seed, prefix="heldout-cervical")
    whole_cases = write_synthetic_cases(tmp / "whole", args.n_whole, "whole", args.seed, prefix="heldout-whole")
    sections, flags = [], []
    for region, cases, radius in (("cervical", cerv_cases, CERVICAL_RADIUS_MM), ("whole", whole_cases, CERVICAL_RADIUS_MM)):
        labeler = Labeler.load(args.model, region)
        images = {c.name: c / "image.nii.gz" for c in cases}
        preds, times, failures, results = _label_all(labeler, images)
        report = evaluate(preds, load_annotations([c / "centroids.json" for c in cases]), match_radius_mm=radius)
        o = report_to_dict(report)["overall"]
        print(format_report(report))
        confs = {k: {v.label: v.confidence for v in r.vertebrae} for k, r in results.items()}
        warned = {k for k, r in results.items() if r.warnings}
        flags.append(f"- {region}: {flag_stats(report, confs, warned=warned)}")
        err = o["error_mm"]
        sections.append(
            f"| {region} | {len(cases)} | {_pct(o['sensitivity'])} | {_pct(o['precision'])} | "
            f"{_mm(err['mean'])} / {_mm(err['median'])} / {_mm(err['p95'])} mm | "
            f"{_pct(o['identification_rate'])} | {_pct(o['scan_accuracy'])} ({o['n_scans_correct']}/{o['n_scans']}) | "
            f"{statistics.median(times):.2f} s | {len(failures)} |"
        )
        if results:
            case = sorted(results)[0]
            render_overlay(load_image([images[case]]).volume, results[case], args.overlay_dir / f"example-synthetic-{region}.png")

    auto_lines = []
    if not args.no_auto:
        auto = AutoLabeler.load()
        lumbar_images = {p.name: p / "image.nii.gz" for p in sorted(SHARED.iterdir()) if (p / "image.nii.gz").is_file()}
        real_cervical = {p.name: p / "image.nii.gz" for p in sorted((SHARED.parent / "cervical-mr").iterdir())
                         if (p / "image.nii.gz").is_file()}
        held_out = json.loads((REPO / "benchmarks" / "lumbar_split.json").read_text())["validation"]
        sets: list[tuple[str, str, dict[str, Path], Callable | None]] = [
            ("shared lumbar-mr (real)", "lumbar", lumbar_images, None),
            ("shared cervical-mr (real)", "cervical", real_cervical, None),
            ("held-out synthetic cervical", "cervical", {c.name: c / "image.nii.gz" for c in cerv_cases}, None),
        ]
        for variant, change in _contrast_changes(args.seed).items():
            sets += [(f"held-out lumbar-mr (real), {variant}", "lumbar", {c: lumbar_images[c] for c in held_out}, change),
                     (f"shared cervical-mr (real), {variant}", "cervical", real_cervical, change)]
        for name, expected, images, change in sets:
            chosen = _auto_choices(auto, images, change)
            wrong = {k: v for k, v in chosen.items() if v != expected}
            auto_lines.append(
                f"| {name} | {len(images)} | "
                f"{len(images) - len(wrong)}/{len(images)} | {', '.join(f'{k}: {v}' for k, v in sorted(wrong.items())) or '—'} |"
            )

    cfg_path = resolve_model_dir(args.model) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    settings = cfg.get("training", {}).get("settings", {})
    cmd = "python -m benchmarks.cervical " + " ".join(argv if argv is not None else sys.argv[1:])
    where = args.overlay_dir.resolve()
    shown = where.relative_to(REPO.resolve()).as_posix() if where.is_relative_to(REPO.resolve()) else str(where)
    body = f"""## Cervical: held-out synthetic scans and region detection

- command: `{cmd.strip()}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- model: `{cfg['name']}` {cfg['version']}: {settings.get('steps', '?')} steps{' fine-tuned from ' + str(Path(settings['init']).name) if settings.get('init') else ''},
  {settings.get('synthetic_fraction', 0):.0%} of crops from {settings.get('synthetic_scans', '?')} phantoms, the rest from
  {len(cfg.get('training', {}).get('scans', []))} real scans (real cervical ones: {settings.get('region_fraction', 0):.0%} of all crops)
- test scans: phantoms from `spinelabel synth` with seed {args.seed} (never seen in training); matching radius {CERVICAL_RADIUS_MM:.0f} mm
- These numbers say the pipeline works on data like its training data. Real cervical MR: see
  "Cervical: real MR, leave one subject out".

| field of view | scans | sensitivity | precision | error mean / median / p95 | identification | scan accuracy | time/scan | failures |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(sections)}

Confidence as a flag for the labels to check:

{chr(10).join(flags)}

`--region auto` (first pass: the cervical model over the whole chain):

| scans | n | right region | wrong |
|---|---|---|---|
{chr(10).join(auto_lines) if auto_lines else '| (skipped) | | | |'}

Overlays: `{shown}/example-synthetic-cervical.png`, `{shown}/example-synthetic-whole.png`.
"""
    write_section(args.results, "cervical-benchmark", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
