"""Real cervical MR under clinical-looking conditions, each subject labeled by the model that never saw it.

Usage (repository root, ../shared beside it; the fold models of ``benchmarks.cervical_real``)::

    python -m benchmarks.cervical_robustness --models /tmp/spinelabel-cervical-loso

Each of the three annotated real cervical subjects (3D T2, 1 mm) is changed the
way clinical cervical series differ from it, then labeled by its fold model of
``benchmarks.cervical_real`` (fine-tuned without that subject) and scored
against its (moved along) annotations:

- ``dicom-2d``: 0.7 mm pixels and 4 mm sagittal slices (a 2D TSE), through DICOM;
- ``oblique-dicom``: 0.6 mm pixels, 4 mm slices turned 12 deg about the
  cranio-caudal axis, through DICOM;
- ``inverted``, ``bias-noise``, ``t1-like``, ``stir-like``: the intensity
  changes of ``benchmarks.robustness`` (T1-like: CSF and discs dark, marrow
  bright; STIR-like: mid tones suppressed); ``t1-like-dark-air``: the T1-like
  fold inside the body's outline only, the air kept dark;
- ``c2-cut``: the image cut 12 mm above the annotated C2 centre (the dens and
  the top of C2's body out of view: C2, the anchor, only partly visible);
- ``no-thoracic``: the image cut 20 mm below C7 (the field of view ends at
  C7/T1, as a short cervical scan does);
- ``fracture``: C5 compressed to 60 % of its height (the discs next to it
  stretch);
- ``kyphosis``: everything caudal to the C4/C5 disc turned 20 deg forward about
  it (a straightened or kyphotic mid-cervical spine instead of the lordosis);
- ``thick-slab``: a 2D sagittal stack as acquired: each 3 mm slice the mean of
  its slab, 3.3 mm apart (10 % gap), 0.6 mm pixels, through DICOM;
- ``narrow-disc``: the C5/C6 disc (the level most often degenerated) collapsed
  to a sliver, the spine below it moved up by 0.2 of the C5-C6 spacing.

Cuts drop annotated points closer than 10 mm to the cut from the ground truth
(``benchmarks.robustness.CUT_MARGIN_MM``). A subject counts as right when
every annotated vertebra is found and named right with no false positive
(match radius 10 mm). Nothing here is tuned: it measures. Writes a section of
docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.cervical import CERVICAL_RADIUS_MM, _mm, _pct
from benchmarks.cervical_real import ANNOTATIONS
from benchmarks.lumbar import WARNING_CODE_HEAD, flag_counts, flag_stats, git_commit, warning_code_rows, write_section
from benchmarks.robustness import (
    Labeled,
    bias_noise,
    contrast,
    cut,
    dicom_thick,
    fracture,
    inverted,
    narrow_disc,
    oblique_dicom,
    t1_dark_air,
    thick_slab,
    turn_below,
)

#: Pixel and slice spacing (mm) of the 2D TSE variant: the thick end of clinical cervical series.
TSE_SPACING_MM = (0.7, 0.7, 4.0)
#: ``thick-slab``: the slab (mm) and grid of a 2D TSE cervical stack, 3 mm slices with a 10 % gap.
SLAB_MM = 3.0
SLAB_SPACING_MM = (0.6, 0.6, 3.3)
#: ``kyphosis``: the turn below C4 (deg; negative: the caudal part swings forward). Cervical lordosis (C2-C7) is
#: about 15-40 deg in adults; 20 deg at one disc straightens it or turns it kyphotic there.
KYPHOSIS_DEG = -20.0


def conditions(tmp: Path, seed: int):
    """Name -> function(volume, points, case) -> (volume, points)."""
    rng = np.random.default_rng(seed)
    return {
        "original": lambda v, p, c: (v, p),
        "dicom-2d": lambda v, p, c: dicom_thick(v, p, tmp, c, TSE_SPACING_MM),
        "oblique-dicom": lambda v, p, c: oblique_dicom(v, p, tmp, c),
        "inverted": lambda v, p, c: inverted(v, p),
        "bias-noise": lambda v, p, c: bias_noise(v, p, rng),
        "t1-like": lambda v, p, c: contrast(v, p, True, rng),
        "t1-like-dark-air": lambda v, p, c: t1_dark_air(v, p),
        "stir-like": lambda v, p, c: contrast(v, p, False, rng),
        "c2-cut": lambda v, p, c: cut(v, p, "C2", 12.0, keep_above=False),
        "no-thoracic": lambda v, p, c: cut(v, p, "C7", -20.0, keep_above=True),
        "fracture": lambda v, p, c: fracture(v, p, "C5", "C6"),
        "kyphosis": lambda v, p, c: turn_below(v, p, "C4", "C3", KYPHOSIS_DEG),
        "thick-slab": lambda v, p, c: thick_slab(v, p, tmp, c, SLAB_MM, SLAB_SPACING_MM),
        "narrow-disc": lambda v, p, c: narrow_disc(v, p, "C5", "C6"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, required=True, help="folder of the fold models without-SUBJECT")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    from spinelabel.annotations import ScanAnnotation, load_annotations
    from spinelabel.evaluation import evaluate, scan_notes
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    gt = {a.scan_id: a for a in load_annotations([ANNOTATIONS])}
    subjects = sorted(gt)
    missing = [s for s in subjects if not (args.models / f"without-{s}" / "config.json").is_file()]
    if missing:
        print(f"no fold model for {', '.join(missing)} in {args.models} (run benchmarks.cervical_real)", file=sys.stderr)
        return 1
    labelers = {s: Labeler.load(str(args.models / f"without-{s}"), "cervical") for s in subjects}
    rows: list[str] = []
    coded: list[tuple[list[str], bool]] = []
    total = {"scans": 0, "scans_right": 0, "wrong": 0, "wrong_warned": 0, "right": 0, "right_warned": 0}
    with tempfile.TemporaryDirectory(prefix="spinelabel-cerv-robust-") as tmp:
        for name, change in conditions(Path(tmp), args.seed).items():
            truth, run = [], Labeled()
            for s in subjects:
                volume, points = change(load_image([gt[s].image]).volume, dict(gt[s].points), s)
                truth.append(ScanAnnotation(s, None, points))
                run.add(s, labelers[s], volume)
            rep = evaluate(run.preds, truth, CERVICAL_RADIUS_MM)
            wrong = [f"{r.scan_id}: {scan_notes(r)}" for r in rep.per_scan if not r.all_correct]
            counts = flag_counts(rep, run.conf, warned=run.warned)
            coded += [(run.codes[r.scan_id], r.all_correct) for r in rep.per_scan if r.scan_id in run.codes]
            rows.append(
                f"| {name} | {rep.n_scans_correct}/{rep.n_scans} | {_pct(rep.identification_rate)} | "
                f"{_pct(rep.sensitivity)} | {_pct(rep.precision)} | {_mm(rep.error_mean_mm)} mm | "
                f"{np.median(run.times):.2f} s | {'; '.join(run.failures + wrong) or '—'} | {flag_stats(counts=counts)} |"
            )
            print(rows[-1], flush=True)
            total["scans"] += rep.n_scans
            total["scans_right"] += rep.n_scans_correct
            for key in ("wrong", "wrong_warned", "right", "right_warned"):
                total[key] += counts[key]
    body = f"""## Cervical: real MR under clinical-looking conditions, leave one subject out

- command: `python -m benchmarks.cervical_robustness {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the three real cervical subjects, each changed as the module docstring of
  `benchmarks/cervical_robustness.py` says and labeled by the fold model trained without it
  (`benchmarks.cervical_real`); ground truth `annotations/cervical-mr.csv`; match radius
  {CERVICAL_RADIUS_MM:.0f} mm. Measured only, nothing tuned on it.
- totals: {total['scans_right']} of {total['scans']} subject-conditions entirely right; {total['wrong']} wrong names,
  {total['wrong_warned']} of them flagged or in a scan with a warning;
  {total['right_warned']} of {total['right']} right names are in a scan with a warning too.

| condition | subjects right | identification | sensitivity | precision | mean error | time/scan | wrong or failed | confidence as a flag |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

What the warning codes say (docs/output-format.md), over every condition and subject above (refused scans left out):
a scan is wrong when it is not entirely right (a name wrong, a vertebra missed or a false one).

{WARNING_CODE_HEAD}
{chr(10).join(warning_code_rows(coded))}
"""
    write_section(args.results, "cervical-robustness", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
