"""Lumbar labeling under clinical-looking conditions the shared data lack, on the held-out split.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.robustness

Each of the 13 held-out scans of benchmarks/lumbar_split.json is changed the
way clinical series differ from the shared data, then labeled by the shipped
lumbar model and scored against its (moved along) annotations:

- ``dicom-thick``: written as an LPS-ordered DICOM series of 4 mm sagittal
  slices with 0.8 mm pixels, and read back through the DICOM loader (the
  slices are resampled at 4 mm by linear interpolation, not averaged over a
  4 mm slab as an acquisition would be);
- ``inverted``: intensities inverted (CSF and discs dark, as on T1);
- ``bias-noise``: a smooth multiplicative bias field (x0.6..x1.6) and
  Gaussian noise of 6 % of the bright level;
- ``no-sacrum``: the image cut 20 mm below the annotated L5 (no S1 anchor);
- ``no-thoracic``: the image cut 20 mm above the annotated L2 (L2/L3 down).

Cuts keep the annotated points at least 10 mm inside the image; points
closer to the cut are dropped from the ground truth. Nothing here is tuned:
it measures. Writes a section of docs/RESULTS.md.
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

from benchmarks.lumbar import REPO, SHARED, flag_stats, git_commit, write_section

#: Ground-truth points closer than this to a cut are dropped (mm).
CUT_MARGIN_MM = 10.0


def _cut(volume, points: dict[str, np.ndarray], level: str, offset_mm: float, keep_above: bool):
    """Crop along the cranio-caudal axis at the annotated ``level`` + ``offset_mm`` (world z)."""
    from spinelabel.geometry import Volume, reorient

    canon = reorient(volume, "RIP")  # axis 1 runs inferior
    row = float(canon.world_to_voxel(points[level] + np.array([0.0, 0.0, offset_mm]))[1])
    n = canon.shape[1]
    lo, hi = (0, int(np.clip(np.ceil(row), 1, n))) if keep_above else (int(np.clip(np.floor(row), 0, n - 1)), n)
    affine = canon.affine.copy()
    affine[:3, 3] = canon.voxel_to_world([0.0, lo, 0.0])
    cropped = Volume(np.ascontiguousarray(canon.data[:, lo:hi]), affine)
    z_cut = points[level][2] + offset_mm
    kept = {k: p for k, p in points.items() if (p[2] - z_cut > CUT_MARGIN_MM if keep_above else z_cut - p[2] > CUT_MARGIN_MM)}
    return cropped, kept


def _dicom_thick(volume, points, tmp: Path, case: str):
    from spinelabel.geometry import reorient, resample_grid
    from spinelabel.io import load_image
    from spinelabel.io.dicom import write_dicom_series

    lps = reorient(volume, ("P", "I", "L"))  # axis 2 lateral: one file per sagittal slice
    thick = resample_grid(lps, [0.8, 0.8, 4.0])
    folder = tmp / case
    write_dicom_series(thick, folder)
    return load_image([folder]).volume, points


def _inverted(volume, points):
    from spinelabel.geometry import Volume

    data = volume.data.astype(np.float32)
    return Volume(float(np.percentile(data, 99.5)) - data, volume.affine), points


def _bias_noise(volume, points, rng: np.random.Generator):
    from scipy import ndimage

    from spinelabel.geometry import Volume

    data = volume.data.astype(np.float32)
    coarse = rng.normal(0.0, 0.25, (4, 4, 4))
    field = ndimage.zoom(coarse, np.array(data.shape) / 4.0, order=3)[tuple(slice(0, s) for s in data.shape)]
    bright = float(np.percentile(data, 99))
    noisy = data * np.clip(np.exp(field), 0.6, 1.6) + rng.normal(0.0, 0.06 * bright, data.shape)
    return Volume(np.clip(noisy, 0, None).astype(np.float32), volume.affine), points


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def _mm(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} mm"


def conditions(tmp: Path, seed: int):
    """Name -> function(volume, points, case) -> (volume, points)."""
    rng = np.random.default_rng(seed)
    return {
        "original": lambda v, p, c: (v, p),
        "dicom-thick": lambda v, p, c: _dicom_thick(v, p, tmp, c),
        "inverted": lambda v, p, c: _inverted(v, p),
        "bias-noise": lambda v, p, c: _bias_noise(v, p, rng),
        "no-sacrum": lambda v, p, c: _cut(v, p, "L5", -20.0, keep_above=True),
        "no-thoracic": lambda v, p, c: _cut(v, p, "L2", 20.0, keep_above=False),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lumbar")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    from spinelabel.annotations import ScanAnnotation, load_annotations
    from spinelabel.evaluation import evaluate
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    cases = json.loads((REPO / "benchmarks" / "lumbar_split.json").read_text())["validation"]
    gt = {a.scan_id: a for a in load_annotations([SHARED / c / "centroids.json" for c in cases])}
    labeler = Labeler.load(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="spinelabel-robust-") as tmp:
        for name, change in conditions(Path(tmp), args.seed).items():
            preds, truth, failures, times, conf = {}, [], [], [], {}
            for case in cases:
                volume, points = change(load_image([SHARED / case / "image.nii.gz"]).volume, dict(gt[case].points), case)
                truth.append(ScanAnnotation(case, None, points))
                t = time.perf_counter()
                try:
                    result = labeler.label(volume)
                    preds[case] = [(v.label, v.position_mm) for v in result.vertebrae]
                    conf[case] = {v.label: v.confidence for v in result.vertebrae}
                except Exception as exc:  # a failure is a result
                    failures.append(f"{case}: {str(exc).splitlines()[0]}")
                times.append(time.perf_counter() - t)
            rep = evaluate(preds, truth)
            shifted = [r.scan_id for r in rep.per_scan if r.mislabeled]
            rows.append(
                f"| {name} | {_pct(rep.sensitivity)} | {_pct(rep.precision)} | "
                f"{_mm(rep.error_mean_mm)} | {_pct(rep.identification_rate)} | "
                f"{rep.n_scans_correct}/{rep.n_scans} | {np.median(times):.2f} s | "
                f"{'; '.join(failures + [f'{s} mislabeled' for s in shifted]) or '—'} | {flag_stats(rep, conf)} |"
            )
            print(rows[-1], flush=True)
    body = f"""## Lumbar: robustness to clinical-looking conditions (held-out split)

- command: `python -m benchmarks.robustness {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the 13 held-out scans, each changed as the module docstring of `benchmarks/robustness.py` says;
  shipped lumbar model; match radius 20 mm. Measured only, nothing tuned on it.

| condition | sensitivity | precision | mean error | identification | scans right | time/scan | failures, mislabeled scans | confidence as a flag |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(args.results, "lumbar-robustness", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
