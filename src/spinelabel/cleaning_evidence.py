"""Cleaning with the images: read each scan's image, check it is sagittal, run the detector.

The pure checks are in :mod:`spinelabel.cleaning`; this module gathers what
each image says (:class:`~spinelabel.cleaning.ImageEvidence`) and runs them
over a set of annotations (:func:`check_annotations`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .annotations import ScanAnnotation
from .cleaning import MIDLINE_TOLERANCE_MM, CleaningParams, CleaningReport, ImageEvidence, clean_annotations, inside_as_lps
from .shape_model import ShapeModel

if TYPE_CHECKING:
    from .pipeline import Labeler

__all__ = ["check_annotations", "gather_evidence", "shape_model_of"]


def shape_model_of(model: str | Path) -> ShapeModel:
    """The learned shape model of a shipped model (region name) or model directory (no torch needed)."""
    from .models import read_config, resolve_model_dir

    return ShapeModel.from_dict(read_config(resolve_model_dir(model)).shape_model)


def gather_evidence(
    image: str | Path,
    labeler: Labeler | None = None,
    series_uid: str | None = None,
    points: Mapping[str, np.ndarray] | None = None,
) -> ImageEvidence:
    """Read an image, check it is sagittal, and run the detector and labeler on it.

    ``series_uid`` picks the series when ``image`` is a DICOM folder holding
    several. ``points`` (level -> world RAS mm): the scan's labels, whose
    distances outside the image are measured (``ImageEvidence.outside_mm``).

    Never raises for a bad image: problems come back in ``error`` (the image
    checks are then skipped for this scan) or ``sagittal_error``.
    """
    from .errors import GeometryError, SpinelabelError
    from .geometry import distance_outside
    from .io import load_image
    from .preprocessing import check_sagittal

    try:
        volume = load_image([Path(image)], series_uid).volume
    except SpinelabelError as exc:
        return ImageEvidence(error=str(exc))
    try:
        check_sagittal(volume)
    except GeometryError as exc:
        return ImageEvidence(sagittal_error=str(exc))
    outside, lps = None, False
    if points:
        pts = np.array([points[lv] for lv in points], float)
        outside = {lv: float(d) for lv, d in zip(points, distance_outside(volume.affine, volume.shape, pts))}
        lps = inside_as_lps(volume.affine, volume.shape, pts)
    if labeler is None:
        return ImageEvidence(outside_mm=outside, lps_suspected=lps)
    try:
        return replace(_detect(volume, labeler), outside_mm=outside, lps_suspected=lps)
    except (SpinelabelError, ValueError, RuntimeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ImageEvidence(error=f"detector failed: {why}", outside_mm=outside, lps_suspected=lps)


def _detect(volume, labeler: Labeler) -> ImageEvidence:
    """The labeler's vertebrae and the mid-plane candidates, from one pass of the network."""
    candidates, result = labeler.detect_and_name(volume)
    predicted = {v.label: (np.asarray(v.position, float), float(v.confidence)) for v in result.vertebrae}
    labeled = np.array([p for p, _ in predicted.values()], float).reshape(-1, 3)
    cands = np.array([c.position for c in candidates], float).reshape(-1, 3)
    if not len(labeled):
        return ImageEvidence(candidates=labeled, predicted=predicted)
    midline = float(np.median(labeled[:, 0]))
    near = cands[np.abs(cands[:, 0] - midline) <= MIDLINE_TOLERANCE_MM]
    return ImageEvidence(candidates=np.concatenate([labeled, near]), predicted=predicted, midline_x=midline)


def check_annotations(
    annotations: Sequence[ScanAnnotation],
    *,
    model: str | Path | None = "lumbar",
    use_images: bool = True,
    use_detector: bool = True,
    params: CleaningParams = CleaningParams(),
    labeler: Labeler | None = None,
    labeler_for: Callable[[ScanAnnotation], Labeler | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CleaningReport:
    """Check a set of annotations with the model's shape model and, optionally, their images.

    Parameters
    ----------
    annotations : sequence of ScanAnnotation
    model : str or Path or None
        Shipped model (region name) or model directory: its shape model gives
        the expected spacings and its network the detector checks. None: the
        anatomical prior spacings, and no detector checks.
    use_images : bool
        Read each scan's image (orientation check); False: geometry only.
    use_detector : bool
        Also run the detector and labeler (needs ``use_images``).
    labeler : Labeler, optional
        Use this instead of loading ``model`` (tests).
    labeler_for : callable, optional
        The labeler whose detector checks one scan's image, when that is not
        the same for every scan (``train`` checks a lumbar scan of a cervical
        training set with the lumbar model); ``labeler`` still gives the shape
        model. None: ``labeler`` checks every scan.
    progress : callable, optional
        Called with each scan id before it is checked.

    Raises
    ------
    ModelError
        The model cannot be loaded. A bad scan never raises: see the notes of
        its :class:`ScanOutcome`.
    """
    use_detector = use_detector and use_images and (model is not None or labeler is not None)
    if labeler is None and use_detector:
        from .pipeline import Labeler

        labeler = Labeler.load(model)  # type: ignore[arg-type]
    if labeler is not None:
        shape = labeler.shape
    else:
        shape = shape_model_of(model) if model is not None else ShapeModel()
    evidence: dict[str, ImageEvidence] = {}
    if use_images:
        for ann in annotations:
            if progress is not None:
                progress(ann.scan_id)
            checker = labeler_for(ann) if labeler_for is not None else labeler
            evidence[ann.scan_id] = _evidence_of(ann, checker if use_detector else None)
    return clean_annotations(annotations, shape, evidence, params)


def _evidence_of(ann: ScanAnnotation, labeler: Labeler | None) -> ImageEvidence:
    """:func:`gather_evidence` for one scan's image and labels."""
    if ann.image is None:
        return ImageEvidence(error="no image for this scan")
    return gather_evidence(ann.image, labeler, ann.series_uid, ann.points)
