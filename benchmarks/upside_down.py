"""Lumbar labeling of images stored upside down under an upright header, on the held-out split.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.upside_down [--model DIR]

A feet-first patient registered as head-first, or a converter that flips the
pixel rows and not the geometry, gives an image whose header says upright
while the spine runs sacrum-up. spinelabel trusts the header
(docs/input-formats.md), so a name is right there only by the mirror's symmetry; what matters is that
the reader is told to look. Each held-out scan of benchmarks/lumbar_split.json
has its data turned head-foot (:func:`upside_down`: the voxels mirrored along
the cranio-caudal axis, the affine kept) and is labeled by the lumbar model.
Counted: the names at 0.5 or above in scans without a warning (a reader takes
them as they stand); and, against the annotated points mirrored with the data,
how many names are wrong and how many of those are neither below 0.5 nor in a
warned scan. Nothing here is tuned: it measures. Writes a section of
docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.fov_sweep import unmarked_wrong
from benchmarks.lumbar import REPO, SHARED, flag_counts, git_commit, held_out_truth, write_section
from benchmarks.robustness import Labeled


def upside_down(volume, points: dict[str, np.ndarray]):
    """The image turned head-foot in its data under the same geometry, and the points moved with their voxels.

    Parameters
    ----------
    volume : spinelabel.geometry.Volume
        Any voxel order.
    points : dict of str to ndarray, shape (3,)
        World RAS mm.

    Returns
    -------
    Volume, dict
        The volume on the same world grid, in RIP voxel order, with its rows (axis 1, inferior) reversed under
        that grid's affine; and each point at the world position of its mirrored voxel.
    """
    from spinelabel.geometry import turned_head_foot

    flipped = turned_head_foot(volume)  # RIP voxel order, rows reversed under the same affine
    last = flipped.shape[1] - 1

    def mirror(p: np.ndarray) -> np.ndarray:
        ijk = flipped.world_to_voxel(p)
        return flipped.voxel_to_world([ijk[0], last - ijk[1], ijk[2]])

    return flipped, {k: mirror(np.asarray(p, float)) for k, p in points.items()}


def sure_unwarned(run: Labeled) -> dict[str, list[str]]:
    """Per scan without a warning, its names at 0.5 or above (``results.LOW_CONFIDENCE``) as ``NAME (conf)``."""
    from spinelabel.results import LOW_CONFIDENCE

    out = {}
    for case, conf in run.conf.items():
        sure = [f"{name} ({c:.2f})" for name, c in conf.items() if c >= LOW_CONFIDENCE]
        if sure and case not in run.warned:
            out[case] = sure
    return out


def upside_down_warned(run: Labeled) -> tuple[int, int]:
    """Scans with the labeler's ``upside-down`` warning, and how many of them have no other code of concern ``count``
    (what the check alone tells the reader)."""
    from spinelabel.warning_codes import CODES, COUNT

    flagged = [codes for codes in run.codes.values() if "upside-down" in codes]
    alone = sum(not any(CODES[c][0] == COUNT for c in codes if c != "upside-down") for codes in flagged)
    return len(flagged), alone


def main(argv: list[str] | None = None) -> int:
    """Turn every held-out scan upside down, label, count the sure names, and write the RESULTS section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lumbar")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    from spinelabel.annotations import ScanAnnotation
    from spinelabel.evaluation import evaluate
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    cases, gt, n_s1 = held_out_truth()
    labeler = Labeler.load(args.model)
    truth, run = [], Labeled()
    for case in cases:
        volume, points = upside_down(load_image([SHARED / case / "image.nii.gz"]).volume, dict(gt[case].points))
        truth.append(ScanAnnotation(case, None, points))
        run.add(case, labeler, volume)
    report = evaluate(run.preds, truth)
    counts = flag_counts(report, run.conf, warned=run.warned)
    sure = sure_unwarned(run)
    worst = unmarked_wrong(report, run)
    n_names = sum(len(p) for p in run.preds.values())
    s1 = sum("S1" in conf for conf in run.conf.values())
    flagged, alone = upside_down_warned(run)
    listing = "; ".join(f"{case}: {', '.join(names)}" for case, names in sure.items()) or "—"
    body = f"""## Lumbar: images stored upside down under an upright header (held-out split)

- command: `python -m benchmarks.upside_down {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the {len(cases)} held-out scans, each with its data turned head-foot and its header left upright (module docstring
  of `benchmarks/upside_down.py`); ground truth: the sources' T11-L5 points plus our S1 points ({n_s1} scans),
  mirrored with the data; shipped lumbar model; match radius 20 mm. A name can be right here only by the
  mirror's symmetry: the header is trusted. Measured only, nothing tuned on it.

| measure | value |
|---|---|
| scans labeled / refused | {len(run.preds)} / {len(run.failures)} |
| names given / S1 named in | {n_names} / {s1} scans |
| scans with a warning | {len(run.warned)} of {len(run.preds)} |
| of them with the `upside-down` warning (the labeler's check; with no other `count` code) | {flagged} ({alone}) |
| wrong names (against the mirrored truth) | {counts['wrong']} |
| of them below 0.5 or in a warned scan | {counts['wrong_warned']} |
| **names at 0.5 or above in a scan without a warning** | **{sum(len(v) for v in sure.values())} in {len(sure)} scans** |
| of them wrong against the mirrored truth | {len(worst)} |
| the scans and their sure names | {listing} |
"""
    write_section(args.results, "lumbar-upside-down", body)
    print(body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
