"""Annotated scans for training: annotation sources -> images + points."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cleaning import LPS_HINT, labels_inside_image, outside_cause
from ..errors import InputError
from ..jsonfile import parse_json
from .sampling import TrainingScan, make_training_scan

#: A scan needs at least this many named vertebrae to teach spacing and levels.
MIN_POINTS_PER_SCAN = 2


def validation_ids(split_file: Path | None) -> set[str]:
    """Scan ids in a split file's "validation" list (never trained on); empty without a file.

    The list holds texts or whole numbers (ids such as accession numbers,
    which a CSV reads as text); anything else is refused, since a text given
    for the list would be taken letter by letter and exclude nothing.
    """
    if split_file is None:
        return set()
    try:
        ids = parse_json(Path(split_file).read_text())["validation"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read split file {split_file}: {exc}") from None
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        raise InputError(f'split file {split_file}: "validation" must be a list of scan ids (texts or whole numbers)')
    return {str(i) for i in ids}


def check_region_covered(points: Sequence[dict[str, np.ndarray]], region: str) -> None:
    """InputError when no scan has a label of ``region``'s levels (cervical labels for a lumbar model)."""
    from ..anatomy import REGIONS, ordinal

    levels = set(REGIONS[region].levels)
    if not any(levels & set(p) for p in points):
        named = sorted({lv for p in points for lv in p}, key=ordinal)
        raise InputError(
            f"none of the {len(points)} scans has a label of the {region} region (their labels: {named[0]}-{named[-1]}): "
            f"give --region for the labels, or the labels of the region"
        )


def load_training_scans(
    sources: Sequence[str | Path],
    exclude: Path | None = None,
    anchor_finders: Mapping[str, Any] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> tuple[list[TrainingScan], list[dict[str, np.ndarray]]]:
    """Load every annotated scan (skipping excluded ones and unusable ones, with a message).

    ``anchor_finders`` (region name -> ``pipeline.Labeler``): when given, the
    finder of the region a scan's labels cover (``anatomy.region_for_levels``)
    looks for that region's missing anchor levels (S1 below annotated L5, C2
    above C3), which are added as pseudo-labels (``TrainingScan.pseudo_levels``;
    see ``training.anchors``). Keyed by the labels' region, not the model's:
    a cervical model that also serves whole spines learns S1 from lumbar scans.

    ``on_message`` receives one line per skipped scan, skipped annotation item
    (``warning: ...``) and added pseudo-label; None: not reported (library
    code prints nothing itself).

    Returns
    -------
    scans : list of TrainingScan
    points : list of dict
        Level name -> (3,) world RAS mm, per scan (for the shape model).
    """
    from ..annotations import load_annotations

    def say(message: str) -> None:
        if on_message is not None:
            on_message(message)

    skip = validation_ids(exclude)
    scans, points = [], []
    for ann in load_annotations(list(sources), on_problem=lambda m: say(f"warning: {m}")):
        if ann.scan_id in skip:
            continue
        loaded = _training_scan(ann, anchor_finders or {}, say)
        if loaded is not None:
            scans.append(loaded[0])
            points.append(loaded[1])
    if not scans:
        raise InputError("no usable annotated scans (each needs an image and at least two named vertebrae)")
    return scans, points


def _training_scan(
    ann: Any, finders: Mapping[str, Any], say: Callable[[str], None]
) -> tuple[TrainingScan, dict[str, np.ndarray]] | None:
    """One annotated scan ready to train on, and its points; None (said why) when it is unusable."""
    from ..io import load_image

    if ann.image is None or len(ann.points) < MIN_POINTS_PER_SCAN:
        say(f"skipped {ann.scan_id}: no image or fewer than {MIN_POINTS_PER_SCAN} labels")
        return None
    try:
        volume = load_image([ann.image], getattr(ann, "series_uid", None)).volume
    except InputError as exc:
        say(f"skipped {ann.scan_id}: {exc}")
        return None
    inside, outside, lps = labels_inside_image(volume.affine, volume.shape, ann.points)
    if len(inside) < MIN_POINTS_PER_SCAN:
        say(f"skipped {ann.scan_id}: {len(outside)} of its {len(ann.points)} labels lie outside its image "
            f"({outside_cause(lps)})")
        return None
    if outside:
        say(f"{ann.scan_id}: {', '.join(outside)} left out: outside the image" + (f" ({LPS_HINT})" if lps else ""))
        ann = replace(ann, points=inside)
    finder = _finder_for(list(ann.points), finders)
    found = _missing_anchors(volume, dict(ann.points), finder) if finder is not None else {}
    if found:
        say(f"{ann.scan_id}: {', '.join(found)} added from the detector (pseudo-label)")
    named = {**ann.points, **found}
    return make_training_scan(ann.scan_id, volume, named, tuple(found)), named


def _finder_for(levels: list[str], finders: Mapping[str, Any]):
    """The anchor finder of the region that ``levels`` cover, or None."""
    from ..anatomy import region_for_levels

    return finders.get(region_for_levels(levels))


def _missing_anchors(volume, points: dict[str, np.ndarray], labeler) -> dict[str, np.ndarray]:
    """The labeler region's anchors absent from ``points`` that its detector finds in ``volume``."""
    from .anchors import complete_anchors

    return complete_anchors(points, labeler.region, labeler.detect(volume), labeler.shape)
