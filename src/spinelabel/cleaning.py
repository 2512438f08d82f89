"""Cleaning clinical spine labels: find what real point annotations get wrong.

Clinical "spine labels" left in PACS are a by-product of reading, not research
ground truth. Before they teach a detector, every scan is checked, and each
problem becomes a :class:`Finding` (scan, label, kind, one-line reason, and
what the cleaned set does about it). The kinds, in the order they are checked:

``non_sagittal``
    The image is not a sagittal series (:func:`spinelabel.preprocessing.check_sagittal`
    refuses it). The points may be right, but the image cannot train a
    sagittal detector. Policy: **the scan is dropped**.
``outside_image``
    A label lies more than :data:`OUTSIDE_IMAGE_MM` outside its image. Policy:
    **the point is dropped**; when more than :data:`MAX_FAR_SHARE` of a scan's
    labels do (another scan's labels, or the wrong image), **the scan is dropped**.
``duplicate``
    A level was given twice (:attr:`ScanAnnotation.duplicates`). Policy:
    **the first point is kept**, the repeats are dropped (the loader already
    did that); a wrong kept point is caught by the checks below.
``out_of_order``
    The points' cranio-caudal order along the spine (their projection on the
    principal axis of the points, oriented caudally; the S-I axis when the
    points are too few or lie too far from it) disagrees with the level order.
    The points not in every longest in-order subsequence are flagged (both
    points of a swapped pair). Policy: **those points are dropped**; when
    more than half the points are out of order (labels upside down), **the
    scan is dropped**.
``far_from_vertebra``
    A label lies off any vertebral body (on a disc, in the canal, beside the
    spine). With the image, the detector is the reference: the vertebrae the
    labeler found plus the candidates near the spine's mid-plane. A label
    farther than :data:`FAR_FRACTION` of the local level spacing (in the
    sagittal plane) from all of them, or more than
    :data:`LATERAL_TOLERANCE_MM` from the mid-plane, is flagged, except an
    interior label that lies on the line of its two neighbours (the geometric
    check below passes it): that is a body the detector missed, and dropping
    it would keep the detector from ever learning the vertebrae it finds
    hardest (errsm20's dim, steep T1-T2 were dropped so, and with them the
    run below). A label on a disc or in the canal is off that line too
    (0.5 and ~0.7 spacings). End labels have one neighbour, so the detector
    alone decides there (and the spacing check). Without the image, the
    geometry decides: an interior point farther than
    :data:`MAX_OFF_LINE_FRACTION` of the spacing from where its neighbours
    put it. Policy: **the point is dropped**; when more than
    :data:`MAX_FAR_SHARE` of a scan's labels are off every detection (the
    labels of another scan, or the wrong image), **the scan is dropped**.
``spacing``
    Two consecutive annotated levels lie at a distance the learned shape
    model (:class:`spinelabel.shape_model.ShapeModel`, with a per-scan size
    factor) finds implausible: ``|z| > SPACING_Z_MAX``. Policy: **the chain
    is split there** (see below).
``missing_level``
    A level between two annotated ones was not annotated, and their distance
    fits the skipped levels. Policy: **the chain is split there**.
``shifted``
    Most labels match the detector + labeler's labels of the same image
    shifted by exactly one level. Policy (``CleaningParams.shifted``):
    ``"drop"`` (default) **drops the scan**; ``"relabel"`` renames every
    level by the shift. Dropping is the default because the labeler itself
    mislabels about one scan in thirteen by one level (docs/RESULTS.md):
    relabeling would teach the model its own mistakes.

Splitting and trimming: the training loss treats every vertebra inside the
annotated range as labeled, so an unannotated vertebra *between* two labels
(a gap, or a dropped point) would be taught as background. The cleaned scan
therefore keeps only its longest run of consecutive levels (ties: the more
caudal run, closer to the sacrum from which levels are counted). A scan left
with fewer than :data:`MIN_POINTS` points is dropped.

Everything here is pure. Reading the images and running the detector
(:func:`spinelabel.cleaning_evidence.check_annotations`) and the reports
(:mod:`spinelabel.cleaning_report`) are in their own modules. Positions are
world RAS millimetres throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from . import anatomy
from .annotations import ScanAnnotation
from .cleaning_geometry import (
    level_pairs,
    local_spacing,
    off_line,
    on_the_line,
    out_of_order,
    sagittal,
    size_factor_of_pairs,
    spine_axis,
    z_score,
)
from .shape_model import ShapeModel

__all__ = [
    "KINDS",
    "SKIPPED_NOTE",
    "CleaningParams",
    "CleaningReport",
    "Finding",
    "ImageEvidence",
    "ScanOutcome",
    "check_scan",
    "clean_annotations",
    "inside_as_lps",
    "labels_inside_image",
    "outside_cause",
]

#: Finding kinds, in the order the checks run.
KINDS = ("non_sagittal", "outside_image", "duplicate", "out_of_order", "far_from_vertebra", "spacing", "missing_level", "shifted")

# ----------------------------------------------------------------- constants

#: Fewest points a cleaned scan needs: one pair gives a spacing and a level
#: order; training (``training.data.MIN_POINTS_PER_SCAN``) needs as many.
MIN_POINTS = 2
#: How far (mm) a label may lie outside its image: a body cut by the edge of the field of view has its centre
#: inside the image or within half a body height beyond it (a lumbar body is about 25 mm tall).
OUTSIDE_IMAGE_MM = 12.5
#: Said when labels outside their image would lie inside it with x and y negated: DICOM patient coordinates (LPS)
#: read as RAS, the one frame mix-up a CSV cannot show (see :func:`inside_as_lps`).
LPS_HINT = "they lie inside it with x and y negated: DICOM (LPS) coordinates read as RAS? Add a CSV column frame=LPS"
#: A spacing is implausible beyond 4 sd of the shape model: a Gaussian tail of
#: 6e-5 per pair. On the 52 shared scans the largest |z| is 1.7.
SPACING_Z_MAX = 4.0
#: Geometry: an interior point is off the spine when it lies more than this
#: fraction of a level spacing (sagittal plane) from where its two neighbours
#: put it. A body centre is half a spacing from the next disc and ~0.7 from
#: the canal; the true centres of the 67 shared lumbar scans and the three
#: annotated cervical subjects reach 0.32 (99th percentile 0.21, 259 points).
#: Without the image it decides alone; with it, it must agree with the detector.
MAX_OFF_LINE_FRACTION = 0.35
#: With image: a label is off any vertebra when every detected vertebra is
#: farther than this fraction of the local level spacing in the sagittal plane.
#: A disc centre is half a spacing (about 18 mm in the lumbar spine) from the
#: nearest body centre. Measured with the shipped model on 7 shared scans:
#: true centroids lie <= 0.11 from a detection, disc centres >= 0.41. 0.3
#: (~11 mm) accepts clicks within the central ~60 % of a body's height; a
#: click at an endplate would teach a wrong centre anyway.
FAR_FRACTION = 0.3
#: Above this share of a scan's labels off every detected vertebra, the labels
#: do not belong to the image (another scan's labels, the wrong image, a
#: transposed coordinate): a detector that finds the spine misses a body or two
#: (errsm20's dim T1-T2), not most of them, so "a body the detector missed"
#: explains a few interior points, never the majority. Policy: the scan is dropped.
MAX_FAR_SHARE = 0.5
#: A label more than this (mm, R-L) from the spine's mid-plane is beside the
#: spine: half a lumbar body's width (45-50 mm). Clinicians click on whichever
#: sagittal slice is on screen, often off the mid-plane, so less is no fault.
LATERAL_TOLERANCE_MM = 25.0
#: Detector candidates farther than this (mm, R-L) from the mid-plane of the
#: labeled vertebrae are not vertebral bodies but pedicles and facet joints on
#: para-sagittal slices (21-37 mm off in the shared scans): a quarter of a
#: body's width keeps them out of the reference.
MIDLINE_TOLERANCE_MM = 12.0
#: Fewest detected vertebrae for the detector checks to be trusted at all.
MIN_CANDIDATES = 3
#: Radius (mm) within which a label and a predicted vertebra are the same
#: vertebra (the evaluation's matching radius: about half a level spacing).
SHIFT_MATCH_MM = 20.0
#: A scan is "shifted" when at least this share of its matched labels differ
#: from the prediction by the same one level: a clear majority, so one or two
#: disagreeing levels (a labeler error at the edge of the field of view) do not count.
SHIFT_MIN_FRACTION = 0.75
#: ... and at least this many labels matched: two could agree with a shift by chance.
SHIFT_MIN_MATCHED = 3
#: Predicted labels below this confidence are not used as a reference. Above
#: the flag threshold (results.LOW_CONFIDENCE, 0.5): dropping or relabeling a
#: clinician's annotation needs more than a label a reader would merely be
#: asked to verify. With the scan-wide level offset, a count that rests on the
#: anchor alone can come out at 0.55-0.6 (cervical phantoms whose C2 is cut off
#: by the image edge, named one level high), and such a count must not overrule
#: the annotation. 0.65 lies midway between those wrong counts (<= 0.6) and the
#: ~0.7 of a right, anchor-confirmed lumbar count (lumbar v6 names a 4 mm
#: clinical series of myoseg-04 right at 0.696-0.700; 0.7 was a knife's edge).
SHIFT_MIN_CONFIDENCE = 0.65

ShiftPolicy = Literal["drop", "relabel"]
#: How a scan's notes begin when its image could not be used (image checks skipped).
SKIPPED_NOTE = "image checks skipped"


@dataclass(frozen=True)
class CleaningParams:
    """Thresholds of the checks (defaults: the module constants and their reasons)."""

    spacing_z_max: float = SPACING_Z_MAX
    max_off_line_fraction: float = MAX_OFF_LINE_FRACTION
    far_fraction: float = FAR_FRACTION
    max_far_share: float = MAX_FAR_SHARE
    lateral_tolerance_mm: float = LATERAL_TOLERANCE_MM
    shift_match_mm: float = SHIFT_MATCH_MM
    shift_min_fraction: float = SHIFT_MIN_FRACTION
    shift_min_matched: int = SHIFT_MIN_MATCHED
    shift_min_confidence: float = SHIFT_MIN_CONFIDENCE
    min_points: int = MIN_POINTS
    #: What to do with a shifted scan: "drop" it or "relabel" it by the shift.
    shifted: ShiftPolicy = "drop"


# ----------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    """One problem in one scan.

    Attributes
    ----------
    scan : str
    label : str
        The level (``"L3"``), a pair (``"L2-L3"``), or ``""`` for the whole scan.
    kind : str
        One of :data:`KINDS`.
    reason : str
        One line, with the numbers that decided.
    action : str
        What the cleaned set does about it.
    """

    scan: str
    label: str
    kind: str
    reason: str
    action: str


@dataclass(frozen=True)
class ScanOutcome:
    """The result of checking one scan."""

    scan: str
    levels_in: tuple[str, ...]
    #: Levels of the cleaned scan (empty when dropped).
    levels_out: tuple[str, ...]
    #: The cleaned annotation, or None when the scan is dropped.
    cleaned: ScanAnnotation | None
    #: Checks that ran: "geometry", "image" (orientation), "detector".
    checks: tuple[str, ...]
    #: Why some check did not run, and other remarks.
    notes: tuple[str, ...] = ()

    @property
    def dropped(self) -> bool:
        return self.cleaned is None


@dataclass(frozen=True)
class CleaningReport:
    """Findings and per-scan outcomes of a set of annotations."""

    findings: list[Finding]
    scans: list[ScanOutcome]

    @property
    def cleaned(self) -> list[ScanAnnotation]:
        """The cleaned annotations (dropped scans left out), in input order."""
        return [s.cleaned for s in self.scans if s.cleaned is not None]


@dataclass(frozen=True)
class ImageEvidence:
    """What the image of one scan says (see :func:`gather_evidence`).

    Attributes
    ----------
    sagittal_error : str or None
        Why the image is not a usable sagittal series; None when it is.
    candidates : ndarray, shape (N, 3), or None
        Reference vertebra positions (world RAS mm): the labeled vertebrae
        and the detector candidates within :data:`MIDLINE_TOLERANCE_MM` of
        their mid-plane; None when the detector did not run.
    midline_x : float or None
        The spine's mid-plane (world x, mm): median x of the labeled vertebrae.
    predicted : dict or None
        The labeler's result: level -> (position (3,), confidence).
    outside_mm : dict or None
        Annotated level -> how far (mm) its point lies outside the image.
    lps_suspected : bool
        Some labels lie outside the image but all would lie inside it read
        as LPS (:func:`inside_as_lps`).
    error : str or None
        Why the image could not be read or analysed (image checks skipped).
    """

    sagittal_error: str | None = None
    candidates: np.ndarray | None = None
    predicted: dict[str, tuple[np.ndarray, float]] | None = None
    error: str | None = None
    midline_x: float | None = None
    outside_mm: dict[str, float] | None = None
    lps_suspected: bool = False


def labels_inside_image(
    affine: np.ndarray, shape: tuple[int, int, int], points: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[str], bool]:
    """Split labels by whether they lie in an image (within :data:`OUTSIDE_IMAGE_MM` of it): what ``train`` and
    ``evaluate-model`` keep of a scan's labels.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        The image's voxel-to-world matrix (RAS mm).
    shape : tuple of int
        The image's array shape (I, J, K).
    points : mapping of str to ndarray, shape (3,)
        Level -> world RAS mm.

    Returns
    -------
    inside : dict
        The labels within the limit, in their order.
    outside : list of str
        The levels beyond it.
    lps_suspected : bool
        Some lie beyond it and all would lie within it read as LPS (:func:`inside_as_lps`).
    """
    from .geometry import distance_outside

    if not points:
        return {}, [], False
    xyz = np.array(list(points.values()), float)
    outside = [lv for lv, d in zip(points, distance_outside(affine, shape, xyz)) if d > OUTSIDE_IMAGE_MM]
    lps = bool(outside) and inside_as_lps(affine, shape, xyz)
    return {lv: p for lv, p in points.items() if lv not in outside}, outside, lps


def outside_cause(lps_suspected: bool) -> str:
    """The likely cause of labels outside their image: DICOM coordinates read as RAS, or another image's labels."""
    return LPS_HINT if lps_suspected else "labels of another scan, or the wrong image?"


def inside_as_lps(affine: np.ndarray, shape: tuple[int, int, int], points: np.ndarray) -> bool:
    """Whether points outside an image would all lie within :data:`OUTSIDE_IMAGE_MM` of it with x and y negated.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        The image's voxel-to-world matrix (RAS mm).
    shape : tuple of int
        The image's array shape (I, J, K).
    points : ndarray, shape (N, 3)
        The labels as read (world RAS mm).

    Returns
    -------
    bool
        True when some point lies beyond the limit as read and none does read
        as LPS: the labels were DICOM patient coordinates.
    """
    from .geometry import distance_outside, lps_to_ras

    pts = np.asarray(points, float).reshape(-1, 3)
    if not len(pts) or np.all(distance_outside(affine, shape, pts) <= OUTSIDE_IMAGE_MM):
        return False
    return bool(np.all(distance_outside(affine, shape, lps_to_ras(pts)) <= OUTSIDE_IMAGE_MM))


def _far_from_candidates(
    points: Mapping[str, np.ndarray],
    candidates: np.ndarray,
    midline_x: float | None,
    shape: ShapeModel,
    params: CleaningParams,
) -> list[tuple[str, str, bool]]:
    """Labels off every detected vertebra: (level, why, whether beside the mid-plane)."""
    out = []
    cands = np.asarray(candidates, float).reshape(-1, 3)
    for level, p in points.items():
        if midline_x is not None and abs(p[0] - midline_x) > params.lateral_tolerance_mm:
            out.append((level, f"{abs(p[0] - midline_x):.1f} mm beside the spine's mid-plane (limit {params.lateral_tolerance_mm:g} mm)", True))
            continue
        d = float(np.min(np.linalg.norm(sagittal(cands - p), axis=1)))
        limit = params.far_fraction * local_spacing(shape, level)
        if d > limit:
            out.append((level, f"{d:.1f} mm from the nearest detected vertebra (limit {limit:.1f} mm)", False))
    return out


def _shift(
    points: Mapping[str, np.ndarray], predicted: Mapping[str, tuple[np.ndarray, float]], params: CleaningParams
) -> tuple[int, int, int]:
    """(shift, agreeing, matched): the one-level shift most labels show against the prediction, else 0.

    ``shift`` = +1 means the prediction names each vertebra one level more
    caudal than the annotation (annotated L2 where the model sees L3).
    """
    ref = [(lv, np.asarray(p, float)) for lv, (p, conf) in predicted.items() if conf >= params.shift_min_confidence]
    ref = [(lv, p) for lv, p in ref if lv in anatomy.STANDARD_LEVELS]
    offsets = []
    for level, p in points.items():
        if level not in anatomy.STANDARD_LEVELS or not ref:
            continue
        dist = [float(np.linalg.norm(q - p)) for _, q in ref]
        k = int(np.argmin(dist))
        if dist[k] <= params.shift_match_mm:
            offsets.append(anatomy.STANDARD_LEVELS.index(ref[k][0]) - anatomy.STANDARD_LEVELS.index(level))
    n = len(offsets)
    for s in (1, -1):
        agree = sum(o == s for o in offsets)
        if n >= params.shift_min_matched and agree >= params.shift_min_fraction * n:
            return s, agree, n
    return 0, 0, n


def _runs(levels: Sequence[str], breaks: set[int]) -> list[list[str]]:
    """Split consecutive levels into runs; ``breaks`` holds i where levels[i]-levels[i+1] is cut."""
    runs: list[list[str]] = []
    for i, level in enumerate(levels):
        if i == 0 or (i - 1) in breaks:
            runs.append([])
        runs[-1].append(level)
    return runs


def _longest_run(runs: list[list[str]]) -> list[str]:
    """The longest run; on ties the most caudal one."""
    if not runs:
        return []
    best = max(len(r) for r in runs)
    return [r for r in runs if len(r) == best][-1]


def _span(levels: Sequence[str]) -> str:
    if not levels:
        return "nothing"
    return levels[0] if len(levels) == 1 else f"{levels[0]}-{levels[-1]}"


# ----------------------------------------------------------------- one scan


@dataclass
class _Scan:
    """Mutable state while one scan is checked."""

    ann: ScanAnnotation
    params: CleaningParams
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, kind: str, reason: str, action: str) -> None:
        self.findings.append(Finding(self.ann.scan_id, label, kind, reason, action))


def _drop_scan(state: _Scan, checks: tuple[str, ...]) -> tuple[list[Finding], ScanOutcome]:
    outcome = ScanOutcome(state.ann.scan_id, state.ann.levels, (), None, checks, tuple(state.notes))
    return state.findings, outcome


def check_scan(
    ann: ScanAnnotation,
    shape: ShapeModel,
    evidence: ImageEvidence | None = None,
    params: CleaningParams = CleaningParams(),
) -> tuple[list[Finding], ScanOutcome]:
    """Check one scan's labels and build its cleaned version (pure).

    Parameters
    ----------
    ann : ScanAnnotation
    shape : ShapeModel
        Expected spacings (a model's learned shape model).
    evidence : ImageEvidence, optional
        What the image says; None for geometry-only checks.
    params : CleaningParams

    Returns
    -------
    findings : list of Finding
    outcome : ScanOutcome
    """
    state = _Scan(ann, params)
    checks = ["geometry"]
    outside = evidence.outside_mm if evidence is not None else None  # the image was read even if the detector failed
    lps = evidence is not None and evidence.lps_suspected
    if evidence is not None and evidence.error is not None:
        state.notes.append(f"{SKIPPED_NOTE}: {evidence.error}")
        evidence = None
    if evidence is not None:
        checks.append("image")
        if evidence.candidates is not None:
            checks.append("detector")
        if evidence.sagittal_error is not None:
            state.add("", "non_sagittal", evidence.sagittal_error, "scan dropped")
            return _drop_scan(state, tuple(checks))

    for level in ann.duplicates:
        state.add(level, "duplicate", f"{level} annotated more than once", "kept the first point, dropped the repeats")

    ordered = sorted(ann.points.items(), key=lambda kv: anatomy.ordinal(kv[0]))
    points = {lv: np.asarray(p, float).reshape(3) for lv, p in ordered}
    checked = _check_outside(state, points, outside, lps) and _check_order(state, points)
    if not (checked and _check_far(state, points, shape, evidence)):
        return _drop_scan(state, tuple(checks))
    breaks = _check_spacing(state, points, shape, original=ann.levels)

    kept = _longest_run(_runs(list(points), breaks))
    if kept and evidence is not None and evidence.predicted is not None:
        relabel = _check_shift(state, points, evidence.predicted)
        if relabel is None:
            return _drop_scan(state, tuple(checks))
        if relabel:
            points = _relabeled(points, relabel)
            kept = [lv for lv in (_shifted_level(k, relabel) for k in kept) if lv is not None]
    return _keep(state, points, kept, tuple(checks))


def _keep(state: _Scan, points: dict[str, np.ndarray], kept: list[str], checks: tuple[str, ...]) -> tuple[list[Finding], ScanOutcome]:
    """The cleaned scan of the ``kept`` levels, or the scan dropped when fewer than ``min_points`` are left."""
    ann, min_points = state.ann, state.params.min_points
    if len(kept) < min_points:
        state.notes.append(f"fewer than {min_points} usable points left ({_span(kept)}): scan dropped")
        return _drop_scan(state, checks)
    if len(kept) < len(points):
        state.notes.append(f"kept {_span(kept)}, the longest run of consecutive levels")
    cleaned = replace(ann, points={lv: points[lv] for lv in kept}, duplicates=())
    return state.findings, ScanOutcome(ann.scan_id, ann.levels, tuple(kept), cleaned, checks, tuple(state.notes))


def _check_outside(
    state: _Scan, points: dict[str, np.ndarray], outside_mm: dict[str, float] | None, lps_suspected: bool = False
) -> bool:
    """Flag and remove labels outside the image; False: the scan is dropped (more than MAX_FAR_SHARE of them)."""
    far = {lv: mm for lv, mm in (outside_mm or {}).items() if mm > OUTSIDE_IMAGE_MM}
    why = f" ({LPS_HINT})" if lps_suspected else ""
    if len(far) > state.params.max_far_share * len(points):
        state.add("", "outside_image", f"{len(far)} of {len(points)} labels lie outside the image: "
                  + outside_cause(lps_suspected), "scan dropped")
        return False
    for level, mm in far.items():
        state.add(level, "outside_image", f"{level} lies {mm:.0f} mm outside the image (more than {OUTSIDE_IMAGE_MM:g} "
                  f"mm: beyond half a body cut by the edge){why}", "point dropped")
        points.pop(level, None)
    return True


def _check_order(state: _Scan, points: dict[str, np.ndarray]) -> bool:
    """Flag and remove out-of-order points; False when the whole scan must go."""
    levels = list(points)
    if len(levels) < 2:
        return True
    pos = np.array([points[lv] for lv in levels])
    axis = spine_axis(pos)
    along = pos @ axis
    flagged = out_of_order(along)
    if not flagged:
        return True
    if len(flagged) > len(levels) / 2:
        state.add(
            "", "out_of_order",
            f"{len(flagged)} of {len(levels)} points run against the level order along the spine (labels upside down?)",
            "scan dropped",
        )
        return False
    for i in flagged:
        level = levels[i]
        above = [levels[k] for k in range(i) if along[k] > along[i]]
        below = [levels[k] for k in range(i + 1, len(levels)) if along[k] < along[i]]
        wrong = ", ".join([f"cranial to {lv}" for lv in above] + [f"caudal to {lv}" for lv in below])
        wrong = wrong or "out of sequence with its neighbours"
        state.add(level, "out_of_order", f"{level} lies {wrong}", "point dropped")
    for i in flagged:
        del points[levels[i]]
    return True


def _check_far(state: _Scan, points: dict[str, np.ndarray], shape: ShapeModel, evidence: ImageEvidence | None) -> bool:
    """Flag and remove labels that lie off any vertebra (detector or geometry); False: the scan is dropped
    (more than :data:`MAX_FAR_SHARE` of its labels off every detection)."""
    cands = evidence.candidates if evidence is not None else None
    if evidence is not None and cands is not None and len(cands) >= MIN_CANDIDATES:
        far = _far_from_candidates(points, cands, evidence.midline_x, shape, state.params)
        if len(far) > state.params.max_far_share * len(points):
            state.add("", "far_from_vertebra", f"{len(far)} of {len(points)} labels lie off every detected vertebra: "
                      "labels of another scan, or the wrong image?", "scan dropped")
            return False
        unseen = [level for level, _, beside in far if not beside]  # beside the spine: no geometry to ask
        on_line = on_the_line(points, shape, state.params.max_off_line_fraction) if unseen else set()
        missed = [level for level in unseen if level in on_line]
        if missed:
            state.notes.append(
                f"no detection near {', '.join(missed)}, but on the line of the neighbouring labels: kept "
                "(a body the detector missed, not a label off it)"
            )
        for level, why, _ in far:
            if level not in missed:
                state.add(level, "far_from_vertebra", f"{level} is {why}: on a disc or outside a body?", "point dropped")
                del points[level]
        return True
    if cands is not None:
        state.notes.append(f"detector found only {len(cands)} vertebrae: geometric check used for labels off a vertebra")
    for level, dev, a, c in off_line(points, shape, state.params.max_off_line_fraction):
        state.add(
            level, "far_from_vertebra",
            f"{level} is {dev:.2f} level spacings off the line of {a} and {c} (limit {state.params.max_off_line_fraction:.2f}): on a disc or outside a body?",
            "point dropped",
        )
        del points[level]
    return True


def _check_spacing(state: _Scan, points: dict[str, np.ndarray], shape: ShapeModel, original: tuple[str, ...]) -> set[int]:
    """Flag implausible spacings and annotated gaps; return the pair indices where the chain breaks.

    A gap made by a dropped point also breaks the chain but is not a finding
    (its cause was reported already).
    """
    pairs = level_pairs(points, shape)
    scale = size_factor_of_pairs(pairs)
    breaks: set[int] = set()
    for i, pair in enumerate(pairs):
        z = z_score(pair, scale)
        n = len(pair.missing) + 1
        levels_text = "1 level" if n == 1 else f"{n} levels"
        if abs(z) > state.params.spacing_z_max:
            factor = scale or 1.0
            state.add(
                pair.label, "spacing",
                f"{pair.label} {pair.distance:.1f} mm apart, expected {factor * pair.mean:.1f} +- {factor * pair.sd:.1f} mm "
                f"for {levels_text} (z = {z:+.1f}, limit {state.params.spacing_z_max:g})",
                "chain split here",
            )
            breaks.add(i)
        elif pair.missing:
            breaks.add(i)
            never = [lv for lv in pair.missing if lv not in original]  # not gaps left by dropped points
            if never:
                state.add(
                    _span(never), "missing_level",
                    f"{_span(never)} not annotated between {pair.upper} and {pair.lower} "
                    f"({pair.distance:.1f} mm apart fits {levels_text}, z = {z:+.1f})",
                    "chain split here",
                )
    return breaks


def _check_shift(state: _Scan, points: dict[str, np.ndarray], predicted: Mapping[str, tuple[np.ndarray, float]]) -> int | None:
    """0 when not shifted; the shift when the scan is to be relabeled; None when it is to be dropped."""
    s, agree, n = _shift(points, predicted, state.params)
    if s == 0:
        return 0
    sample = next(lv for lv in points if lv in anatomy.STANDARD_LEVELS)
    seen = _shifted_level(sample, s)
    reason = (
        f"{agree} of {n} labels are one level {'cranial' if s > 0 else 'caudal'} of the model's labels "
        f"(annotated {sample} where the model sees {seen})"
    )
    if state.params.shifted == "relabel":
        state.add("", "shifted", reason, f"relabeled by {s:+d} level")
        return s
    state.add("", "shifted", reason, "scan dropped")
    return None


def _shifted_level(level: str, shift: int) -> str | None:
    chain = anatomy.STANDARD_LEVELS
    if level not in chain:
        return None
    i = chain.index(level) + shift
    return chain[i] if 0 <= i < len(chain) else None


def _relabeled(points: dict[str, np.ndarray], shift: int) -> dict[str, np.ndarray]:
    out = {}
    for level, p in points.items():
        new = _shifted_level(level, shift)
        if new is not None:
            out[new] = p
    return out


# ----------------------------------------------------------------- sets


def clean_annotations(
    annotations: Sequence[ScanAnnotation],
    shape: ShapeModel,
    evidence: Mapping[str, ImageEvidence] | None = None,
    params: CleaningParams = CleaningParams(),
) -> CleaningReport:
    """Check every scan (pure); ``evidence`` maps scan id -> ImageEvidence where known."""
    findings: list[Finding] = []
    outcomes: list[ScanOutcome] = []
    for ann in annotations:
        f, o = check_scan(ann, shape, (evidence or {}).get(ann.scan_id), params)
        findings.extend(f)
        outcomes.append(o)
    return CleaningReport(findings, outcomes)
