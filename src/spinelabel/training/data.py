"""Annotated scans for training: annotation sources -> images + points."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .sampling import TrainingScan, make_training_scan

#: A scan needs at least this many named vertebrae to teach spacing and levels.
MIN_POINTS_PER_SCAN = 2


def _excluded(split_file: Path | None) -> set[str]:
    if split_file is None:
        return set()
    try:
        return set(json.loads(Path(split_file).read_text())["validation"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read split file {split_file}: {exc}") from None


def load_training_scans(
    sources: Sequence[str | Path], exclude: Path | None = None, quiet: bool = False
) -> tuple[list[TrainingScan], list[dict[str, np.ndarray]]]:
    """Load every annotated scan (skipping excluded ones and unusable ones, with a message).

    Returns
    -------
    scans : list of TrainingScan
    points : list of dict
        Level name -> (3,) world RAS mm, per scan (for the shape model).
    """
    from ..annotations import load_annotations
    from ..io import load_image

    skip = _excluded(exclude)
    scans, points = [], []
    for ann in load_annotations(list(sources)):
        if ann.scan_id in skip:
            continue
        if ann.image is None or len(ann.points) < MIN_POINTS_PER_SCAN:
            if not quiet:
                print(f"skipped {ann.scan_id}: no image or fewer than {MIN_POINTS_PER_SCAN} labels", file=sys.stderr)
            continue
        try:
            volume = load_image([ann.image], getattr(ann, "series_uid", None)).volume
        except InputError as exc:
            if not quiet:
                print(f"skipped {ann.scan_id}: {exc}", file=sys.stderr)
            continue
        scans.append(make_training_scan(ann.scan_id, volume, dict(ann.points)))
        points.append(dict(ann.points))
    if not scans:
        raise InputError("no usable annotated scans (each needs an image and at least two named vertebrae)")
    return scans, points
