"""The paper's metrics: detection, localization, identification, scan accuracy.

Forsberg, Sjöblom & Sunshine (J Digit Imaging 30:406-412, 2017) report
detection sensitivity, precision, localization error (mm) and labeling
accuracy. They count a detection as a true positive when it lies inside the
vertebral body. We have no masks at evaluation time (clinical annotations are
points), so matching uses a distance threshold, as in Glocker et al.
(MICCAI 2012, 2013) and the VerSe benchmark (Sekuboyina et al., Med Image
Anal 73:102166, 2021). The definitions, per scan (all distances in world
RAS mm):

Detection (label-agnostic)
    Predicted points are matched one-to-one to annotated (GT) points by the
    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on
    Euclidean distance. Only pairs at distance <= ``match_radius_mm``
    (default 20 mm, about half the lumbar centroid spacing of 32-40 mm; for
    cervical spines use about 10 mm) may match; among the assignments with
    the most such pairs, the one with the least total distance is taken.
    TP = matched pairs. FN = unmatched GT points. An unmatched prediction is
    a FP if it lies within the *annotated extent*; otherwise it is
    "outside" (reported, not counted as FP). The annotated extent: project
    the prediction on the axis from the most cranial to the most caudal GT
    point (by level order); it is outside when it lies more than
    ``match_radius_mm`` cranial of the top GT point or caudal of the bottom
    one along that axis. A prediction named with a level beyond the
    annotated ones (S1 under GT ending at L5) that is farther than
    ``match_radius_mm`` from every GT point is outside too: the lumbosacral
    angle can put S1 posterior of L5 rather than below it along the axis.
    (GT often covers only some levels, e.g. L1-L5, while the software also
    finds T12 or S1; those are not errors.) With one GT point the extent is
    the ball of radius ``match_radius_mm`` around it; with none, every
    prediction is outside.
    sensitivity = TP / (TP + FN); precision = TP / (TP + FP).
Localization error
    The distance of each matched pair; reported as mean, median, 95th
    percentile (numpy's linear interpolation) and maximum over all pairs.
Identification
    A GT vertebra is *identified* when its matched prediction has the same
    label. Identification rate = identified / all GT vertebrae (missed ones
    count as not identified); also per level, e.g. ``L1: 34/35``.
    The Glocker/VerSe identification rate is reported beside it: GT
    vertebra v is identified when a prediction labelled v lies within 20 mm
    (``match_radius_mm``) of it and v's GT point is the closest GT point to
    that prediction (the rule of VerSe's reference code,
    ``utils/eval_utilities.py:get_hits``). No one-to-one matching is
    involved; if a label is predicted twice, the prediction nearest to the
    GT point is used.
Scan labeling accuracy
    The fraction of scans in which every GT vertebra is matched and
    correctly named and there is no FP. Predictions outside the annotated
    extent do not count against a scan.

Scans that have annotations but no prediction count as all missed (FN) and
are listed in :attr:`EvaluationReport.missing_predictions`; predictions for
scans without annotations are listed and otherwise ignored.

Prediction files (spinelabel output, schema v1, see docs/output-format.md)
are read by :func:`load_predictions`; the scan id of a file is its
``"scan_id"`` field when present, else for a DICOM series the scan id the
annotations give that SeriesInstanceUID (``spinelabel evaluate`` passes
them), else the case folder of its ``"input"`` (the parent folder name of the
input file, or the folder of a DICOM series), else the folder holding the
JSON file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import anatomy
from .annotations import CENTROIDS_NAME, ScanAnnotation
from .errors import InputError, OutputError
from .io import parse_dicom_description
from .jsonfile import is_finite_number, read_json

__all__ = [
    "DEFAULT_MATCH_RADIUS_MM",
    "Match",
    "ScanResult",
    "EvaluationReport",
    "evaluate_scan",
    "evaluate",
    "load_predictions",
    "format_report",
    "report_to_dict",
]

#: Default matching radius (mm): about half the lumbar centroid spacing. Use ~10 mm for cervical.
DEFAULT_MATCH_RADIUS_MM = 20.0

Prediction = Union[Mapping[str, np.ndarray], Sequence[tuple[str, np.ndarray]]]


@dataclass(frozen=True)
class Match:
    """One matched pair of a GT vertebra and a prediction."""

    gt_label: str
    pred_label: str
    distance_mm: float

    @property
    def correct(self) -> bool:
        return self.gt_label == self.pred_label


@dataclass(frozen=True)
class ScanResult:
    """The metrics of one scan (see the module docstring for the definitions)."""

    scan_id: str
    n_gt: int
    n_pred: int
    #: Matched pairs (TP), cranial to caudal by GT level.
    matches: tuple[Match, ...]
    #: GT levels without a matched prediction (FN).
    missed: tuple[str, ...]
    #: Labels of unmatched predictions inside the annotated extent (FP).
    false_positives: tuple[str, ...]
    #: Labels of unmatched predictions outside the annotated extent (not FP).
    outside: tuple[str, ...]
    #: GT levels identified by the Glocker/VerSe rule.
    glocker_identified: tuple[str, ...]
    #: Labels that occur more than once among the predictions (should not happen).
    duplicate_pred_labels: tuple[str, ...] = ()
    #: False when the scan had no prediction at all (everything counted as missed).
    has_prediction: bool = True

    @property
    def tp(self) -> int:
        return len(self.matches)

    @property
    def fn(self) -> int:
        return len(self.missed)

    @property
    def fp(self) -> int:
        return len(self.false_positives)

    @property
    def n_outside(self) -> int:
        return len(self.outside)

    @property
    def errors_mm(self) -> tuple[float, ...]:
        return tuple(m.distance_mm for m in self.matches)

    @property
    def mean_error_mm(self) -> float | None:
        return float(np.mean(self.errors_mm)) if self.matches else None

    @property
    def identified(self) -> tuple[str, ...]:
        """GT levels whose matched prediction carries the same label."""
        return tuple(m.gt_label for m in self.matches if m.correct)

    @property
    def mislabeled(self) -> tuple[tuple[str, str], ...]:
        """(GT level, predicted label) of matched pairs with the wrong label."""
        return tuple((m.gt_label, m.pred_label) for m in self.matches if not m.correct)

    @property
    def all_correct(self) -> bool:
        """Every GT vertebra matched and correctly named, and no FP."""
        return self.has_prediction and self.fn == 0 and self.fp == 0 and not self.mislabeled


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics over many scans; rates are None where their denominator is 0."""

    per_scan: list[ScanResult]
    match_radius_mm: float
    n_scans: int
    n_gt: int
    n_pred: int
    tp: int
    fn: int
    fp: int
    #: Unmatched predictions outside the annotated extent (not counted as FP).
    outside: int
    sensitivity: float | None
    precision: float | None
    error_mean_mm: float | None
    error_median_mm: float | None
    error_p95_mm: float | None
    error_max_mm: float | None
    n_identified: int
    identification_rate: float | None
    n_identified_glocker: int
    glocker_identification_rate: float | None
    n_scans_correct: int
    scan_accuracy: float | None
    #: Level -> (identified, annotated), cranial to caudal.
    per_level: dict[str, tuple[int, int]]
    #: Annotated scans without a prediction (counted as all missed).
    missing_predictions: tuple[str, ...] = ()
    #: Predicted scans without annotation (ignored).
    unannotated_predictions: tuple[str, ...] = ()


# ----------------------------------------------------------------- one scan


def _level_key(label: str) -> float:
    try:
        return anatomy.ordinal(label)
    except ValueError:
        return math.inf


def _normalise_label(label: str) -> str:
    try:
        return anatomy.parse_level(label)
    except ValueError:
        return str(label)


def _point(xyz: Any, what: str) -> np.ndarray:
    p = np.asarray(xyz, dtype=float).reshape(-1)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"{what}: expected 3 finite coordinates, got {xyz!r}")
    return p


def _prediction_list(pred: Prediction) -> list[tuple[str, np.ndarray]]:
    items = pred.items() if isinstance(pred, Mapping) else pred
    return [(_normalise_label(lab), _point(xyz, f"prediction {lab}")) for lab, xyz in items]


def _match(dist: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """Maximum number of pairs within ``radius``; among those, least total distance."""
    if dist.size == 0:
        return []
    valid = dist <= radius
    if not valid.any():
        return []
    big = float(dist[valid].sum()) + 1.0  # larger than any total of valid pairs
    cost = np.where(valid, dist, big)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]


def _outside_extent(p: np.ndarray, gt_pts: np.ndarray, radius: float) -> bool:
    """Whether a prediction lies beyond the annotated levels (see module docstring).

    ``gt_pts`` is ordered cranial to caudal.
    """
    if len(gt_pts) == 0:
        return True
    top, bottom = gt_pts[0], gt_pts[-1]
    axis = bottom - top
    length = float(np.linalg.norm(axis))
    if len(gt_pts) == 1 or length == 0.0:
        return float(np.linalg.norm(p - top)) > radius
    s = float(np.dot(p - top, axis / length))
    return s < -radius or s > length + radius


def _beyond_levels(label: str, gt_labels: Sequence[str]) -> bool:
    """Whether ``label`` is cranial or caudal of every annotated level (False for an unknown name)."""
    try:
        o = anatomy.ordinal(anatomy.parse_level(label))
    except ValueError:
        return False
    ords = [anatomy.ordinal(lab) for lab in gt_labels]
    return bool(ords) and (o < min(ords) or o > max(ords))


def evaluate_scan(
    pred: Prediction,
    gt: Mapping[str, np.ndarray],
    scan_id: str,
    match_radius_mm: float = DEFAULT_MATCH_RADIUS_MM,
    *,
    has_prediction: bool = True,
) -> ScanResult:
    """Match one scan's predictions to its annotated points and score them.

    ``pred`` is a mapping label -> (3,) point, or a list of (label, point)
    pairs (a label may then occur twice). ``gt`` maps level names to (3,)
    world mm points. ``has_prediction=False`` marks a scan that had no
    prediction file (it then never counts as correct).
    """
    if not match_radius_mm > 0:
        raise ValueError(f"match_radius_mm must be positive, got {match_radius_mm}")
    preds = _prediction_list(pred)
    gt_items = sorted(
        ((anatomy.parse_level(lab), _point(xyz, f"GT {lab}")) for lab, xyz in gt.items()),
        key=lambda kv: anatomy.ordinal(kv[0]),
    )
    gt_labels = [lab for lab, _ in gt_items]
    if len(set(gt_labels)) != len(gt_labels):
        raise ValueError(f"scan {scan_id}: a GT level is given twice")
    gt_pts = np.array([p for _, p in gt_items], dtype=float).reshape(-1, 3)
    pred_labels = [lab for lab, _ in preds]
    pred_pts = np.array([p for _, p in preds], dtype=float).reshape(-1, 3)

    dist = np.linalg.norm(gt_pts[:, None, :] - pred_pts[None, :, :], axis=-1)  # (n_gt, n_pred)
    pairs = sorted(_match(dist, match_radius_mm))
    matches = tuple(Match(gt_labels[g], pred_labels[p], float(dist[g, p])) for g, p in pairs)
    matched_gt = {g for g, _ in pairs}
    matched_pred = {p for _, p in pairs}
    missed = tuple(lab for g, lab in enumerate(gt_labels) if g not in matched_gt)

    fps: list[str] = []
    outside: list[str] = []
    for p in range(len(preds)):
        if p in matched_pred:
            continue
        beyond = _beyond_levels(pred_labels[p], gt_labels) and bool(dist[:, p].min(initial=np.inf) > match_radius_mm)
        is_outside = beyond or _outside_extent(pred_pts[p], gt_pts, match_radius_mm)
        (outside if is_outside else fps).append(pred_labels[p])
    glocker = _glocker_identified(dist, gt_labels, pred_labels, match_radius_mm)
    dups = tuple(sorted({lab for lab in pred_labels if pred_labels.count(lab) > 1}, key=_level_key))
    return ScanResult(
        scan_id=scan_id,
        n_gt=len(gt_labels),
        n_pred=len(preds),
        matches=matches,
        missed=missed,
        false_positives=tuple(fps),
        outside=tuple(outside),
        glocker_identified=tuple(glocker),
        duplicate_pred_labels=dups,
        has_prediction=has_prediction,
    )


def _glocker_identified(
    dist: np.ndarray, gt_labels: Sequence[str], pred_labels: Sequence[str], match_radius_mm: float
) -> list[str]:
    """Glocker / VerSe identification: the GT levels v whose prediction labelled v lies within
    the radius, and to which v is the closest GT point; ``dist`` is (n_gt, n_pred) in mm."""
    glocker = []
    for g, lab in enumerate(gt_labels):
        cands = [p for p, pl in enumerate(pred_labels) if pl == lab]
        if not cands:
            continue
        p = min(cands, key=lambda i: dist[g, i])
        if dist[g, p] <= match_radius_mm and dist[g, p] <= dist[:, p].min():
            glocker.append(lab)
    return glocker


# ----------------------------------------------------------------- many scans


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def evaluate(
    predictions: Mapping[str, Prediction],
    annotations: Sequence[ScanAnnotation],
    match_radius_mm: float = DEFAULT_MATCH_RADIUS_MM,
) -> EvaluationReport:
    """Score predictions (scan id -> labelled points) against annotations.

    Every annotated scan is evaluated, in the order of ``annotations``; one
    without a prediction counts as all missed and is listed in
    ``missing_predictions``.
    """
    ids = [a.scan_id for a in annotations]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"scan id(s) annotated more than once: {', '.join(dup)}")
    per_scan = [
        evaluate_scan(predictions[a.scan_id], a.points, a.scan_id, match_radius_mm)
        if a.scan_id in predictions
        else evaluate_scan([], a.points, a.scan_id, match_radius_mm, has_prediction=False)
        for a in annotations
    ]
    missing = [a.scan_id for a in annotations if a.scan_id not in predictions]
    annotated = set(ids)
    unannotated = tuple(s for s in predictions if s not in annotated)
    errors = np.array([e for r in per_scan for e in r.errors_mm], dtype=float)
    per_level = _per_level(per_scan)
    n_gt = sum(r.n_gt for r in per_scan)
    tp = sum(r.tp for r in per_scan)
    fn = sum(r.fn for r in per_scan)
    fp = sum(r.fp for r in per_scan)
    n_id = sum(len(r.identified) for r in per_scan)
    n_glocker = sum(len(r.glocker_identified) for r in per_scan)
    n_ok = sum(r.all_correct for r in per_scan)
    has_err = errors.size > 0
    return EvaluationReport(
        per_scan=per_scan,
        match_radius_mm=float(match_radius_mm),
        n_scans=len(per_scan),
        n_gt=n_gt,
        n_pred=sum(r.n_pred for r in per_scan),
        tp=tp,
        fn=fn,
        fp=fp,
        outside=sum(r.n_outside for r in per_scan),
        sensitivity=_rate(tp, tp + fn),
        precision=_rate(tp, tp + fp),
        error_mean_mm=float(errors.mean()) if has_err else None,
        error_median_mm=float(np.median(errors)) if has_err else None,
        error_p95_mm=float(np.percentile(errors, 95)) if has_err else None,
        error_max_mm=float(errors.max()) if has_err else None,
        n_identified=n_id,
        identification_rate=_rate(n_id, n_gt),
        n_identified_glocker=n_glocker,
        glocker_identification_rate=_rate(n_glocker, n_gt),
        n_scans_correct=n_ok,
        scan_accuracy=_rate(n_ok, len(per_scan)),
        per_level=per_level,
        missing_predictions=tuple(missing),
        unannotated_predictions=unannotated,
    )


def _per_level(per_scan: Sequence[ScanResult]) -> dict[str, tuple[int, int]]:
    """Level -> (identified, annotated) over all scans, cranial to caudal."""
    counts: dict[str, list[int]] = {}
    for r in per_scan:
        ok = set(r.identified)
        for lab in (*(m.gt_label for m in r.matches), *r.missed):
            c = counts.setdefault(lab, [0, 0])
            c[1] += 1
            c[0] += lab in ok
    return {lab: (c[0], c[1]) for lab, c in sorted(counts.items(), key=lambda kv: _level_key(kv[0]))}


# ----------------------------------------------------------------- prediction files

def _scan_id_from_input(input_text: object, json_path: Path, series_ids: Mapping[str, str]) -> str:
    """The scan id ``series_ids`` gives a prediction's DICOM series; else the case folder name of its ``input``;
    else the JSON file's folder name."""
    if isinstance(input_text, str) and input_text.strip():
        dicom = parse_dicom_description(input_text)
        if dicom and dicom[0] in series_ids:
            return series_ids[dicom[0]]
        name = PurePath(dicom[1]).name if dicom else PurePath(input_text.strip()).parent.name
        if name not in ("", ".", ".."):
            return name
    return json_path.resolve().parent.name


def _prediction(doc: Any, path: Path, series_ids: Mapping[str, str]) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """Scan id and labeled points of the result document ``doc`` read from ``path``."""
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise InputError(f"{path}: not a spinelabel output (no \"schema_version\")")
    if doc["schema_version"] != 1 or isinstance(doc["schema_version"], bool):
        raise InputError(f"{path}: unsupported schema_version {doc['schema_version']!r} (this version reads 1)")
    verts = doc.get("vertebrae")
    if not isinstance(verts, list):
        raise InputError(f"{path}: no \"vertebrae\" list")
    if "scan_id" in doc:
        scan_id = doc["scan_id"]
        if not isinstance(scan_id, str) or not scan_id.strip():
            raise InputError(f"{path}: \"scan_id\" must be a non-empty string")
        scan_id = scan_id.strip()
    else:
        scan_id = _scan_id_from_input(doc.get("input"), path, series_ids)
    out: list[tuple[str, np.ndarray]] = []
    for n, v in enumerate(verts, start=1):
        where = f"{path}: vertebra #{n}"
        if not isinstance(v, dict) or "label" not in v:
            raise InputError(f"{where}: expected an object with \"label\" and \"position_mm\"")
        try:
            label = anatomy.parse_level(str(v["label"]))
        except ValueError:
            raise InputError(f"{where}: unknown vertebra label {v['label']!r}") from None
        xyz = v.get("position_mm")
        if (
            not isinstance(xyz, list)
            or len(xyz) != 3
            or not all(is_finite_number(c) for c in xyz)
        ):
            raise InputError(f"{where} ({label}): \"position_mm\" must be a list of 3 finite numbers")
        out.append((label, np.asarray(xyz, dtype=float)))
    return scan_id, out


def unambiguous_scans(gt: Sequence[ScanAnnotation]) -> tuple[list[ScanAnnotation], list[str]]:
    """The scans whose ground truth gives each level once, and one message per scan left out.

    A level given twice (``ScanAnnotation.duplicates``; the loader kept the
    first point) leaves unknown which point is right: scoring the first would
    count a right prediction near the second as a miss and a false positive.
    """
    kept = [a for a in gt if not a.duplicates]
    left_out = [f"{a.source or a.scan_id}: scan {a.scan_id!r} gives {', '.join(a.duplicates)} more than once; "
                "left out of the metrics (spinelabel annotations check finds such labels)" for a in gt if a.duplicates]
    return kept, left_out


def _some(names: Iterable[str], most: int = 3) -> str:
    """A few names of a collection, for a message: "a, b, c and 7 more"."""
    ordered = sorted(names)
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return (", ".join(ordered[:most]) or "none") + more


def check_some_left(gt: Sequence[ScanAnnotation]) -> None:
    """InputError when no annotated scan is left after :func:`unambiguous_scans`."""
    if not gt:
        raise InputError("no annotated scan left to evaluate against: each gives some level more than once")


def check_pairs(preds: Mapping[str, object], gt: Sequence[ScanAnnotation]) -> None:
    """Refuse an evaluation in which no annotated scan has a prediction: a 0 % report of two sets that were
    never paired (scan ids taken by other rules) reads as a model that found nothing.

    Raises
    ------
    InputError
        No annotated scan is left (every one left out), or none of their ids is among ``preds``.
    """
    check_some_left(gt)
    if not {a.scan_id for a in gt} & set(preds):
        raise InputError(f"no prediction belongs to an annotated scan (predictions: {_some(preds)}; annotations: "
                         f"{_some(a.scan_id for a in gt)}): see docs/evaluation.md for how scan ids are found")


def load_predictions(
    paths: Sequence[str | Path], series_ids: Mapping[str, str] | None = None
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Read spinelabel output JSONs (schema v1): files, or folders of ``*.json``.

    A folder means every ``*.json`` in it or below, in sorted order, except
    annotation files named ``centroids.json``, hidden files and folders (an
    editor's checkpoints, a run's staging folder) and evaluation reports
    (``evaluate --json`` written beside the results). Scan id: the
    JSON's ``"scan_id"`` if present; else, for a DICOM input, the scan id
    ``series_ids`` gives its SeriesInstanceUID (the annotations' own ids, as
    ``annotations import`` names them); else the case folder of its ``"input"``
    (the parent folder's name for a file such as ``.../zukic-02/image.nii.gz``;
    the series folder's name for ``DICOM series <uid> (<n> files in <folder>)``);
    else (no or folder-less input) the name of the folder holding the JSON.

    Returns scan id -> [(label, (3,) position_mm), ...] in file order.

    Raises
    ------
    InputError
        A path is missing, a folder has no JSON, a file is not valid JSON or
        not a schema-v1 output, or two files give the same scan id.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[tuple[Path, Path | None]] = []  # (file, the folder it was found in; None: given)
    folders = [Path(src) for src in paths if Path(src).is_dir()]
    for src in paths:
        p = Path(src)
        if p.is_dir():
            files += [(f, p) for f in sorted(p.rglob("*.json")) if f.is_file() and f.name != CENTROIDS_NAME
                      and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        elif p.is_file():
            files.append((p, None))
        else:
            raise InputError(f"{p}: no such file or folder")
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    origin: dict[str, Path] = {}
    seen: set[Path] = set()
    for f, folder in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        doc = read_json(f)
        if folder is not None and _is_report(doc):  # an evaluation report written beside the results
            continue
        scan_id, verts = _prediction(doc, f, series_ids or {})
        if scan_id in origin:
            raise InputError(
                f"{f}: scan id {scan_id!r} also comes from {origin[scan_id]} "
                "(put each scan's input in its own folder, or add a \"scan_id\" field)"
            )
        origin[scan_id] = f
        out[scan_id] = verts
    for folder in folders:
        if not any(f.is_relative_to(folder) for f in origin.values()):
            raise InputError(f"{folder}: no prediction *.json files in this folder or below")
    return out


# ----------------------------------------------------------------- output


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _mm(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} mm"


def scan_notes(r: ScanResult) -> str:
    notes = []
    if not r.has_prediction:
        notes.append("no prediction")
    if r.mislabeled:
        notes.append("mislabeled " + " ".join(f"{g}->{p}" for g, p in r.mislabeled))
    if r.missed and r.has_prediction:
        notes.append("missed " + " ".join(r.missed))
    if r.false_positives:
        notes.append("FP " + " ".join(r.false_positives))
    if r.duplicate_pred_labels:
        notes.append("duplicate labels " + " ".join(r.duplicate_pred_labels))
    return "; ".join(notes)


def format_report(report: EvaluationReport) -> str:
    """A plain-text table (one row per scan) and the overall metrics, for the terminal."""
    w = max([4, *(len(r.scan_id) for r in report.per_scan)])
    lines = [
        f"{'scan':<{w}}  {'GT':>3} {'TP':>3} {'FN':>3} {'FP':>3} {'out':>3}  {'err mm':>6}  {'ok':<3}  notes",
    ]
    for r in report.per_scan:
        err = "-" if r.mean_error_mm is None else f"{r.mean_error_mm:.2f}"
        lines.append(
            f"{r.scan_id:<{w}}  {r.n_gt:>3} {r.tp:>3} {r.fn:>3} {r.fp:>3} {r.n_outside:>3}  {err:>6}  "
            f"{'yes' if r.all_correct else 'NO':<3}  {scan_notes(r)}".rstrip()
        )
    rep = report
    lines += [
        "",
        f"{rep.n_scans} scans, {rep.n_gt} annotated vertebrae, {rep.n_pred} predictions; "
        f"match radius {rep.match_radius_mm:g} mm",
        f"Detection:       sensitivity {_pct(rep.sensitivity)} ({rep.tp}/{rep.tp + rep.fn}), "
        f"precision {_pct(rep.precision)} ({rep.tp}/{rep.tp + rep.fp}); "
        f"{rep.outside} prediction(s) outside the annotated range (not counted)",
        f"Localization:    mean {_mm(rep.error_mean_mm)}, median {_mm(rep.error_median_mm)}, "
        f"95th percentile {_mm(rep.error_p95_mm)}, max {_mm(rep.error_max_mm)} ({rep.tp} matched pairs)",
        f"Identification:  {_pct(rep.identification_rate)} ({rep.n_identified}/{rep.n_gt}) matched with the right label; "
        f"Glocker/VerSe id. rate {_pct(rep.glocker_identification_rate)} ({rep.n_identified_glocker}/{rep.n_gt})",
        f"Scan accuracy:   {_pct(rep.scan_accuracy)} ({rep.n_scans_correct}/{rep.n_scans} scans entirely correct)",
    ]
    if rep.per_level:
        lines.append("Per level:       " + "  ".join(f"{k} {a}/{b}" for k, (a, b) in rep.per_level.items()))
    if rep.missing_predictions:
        lines.append(
            f"No prediction for {len(rep.missing_predictions)} scan(s) (counted as all missed): "
            + ", ".join(rep.missing_predictions)
        )
    if rep.unannotated_predictions:
        lines.append(
            f"Predictions without annotation (ignored): {', '.join(rep.unannotated_predictions)}"
        )
    return "\n".join(lines)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


#: Keys of every report :func:`report_to_dict` writes: ``evaluate --json`` replaces a file only when it has them.
REPORT_KEYS = ("match_radius_mm", "overall")
#: A file larger than this is not read to see whether it is a report (one of an archive of ~10^5 scans is
#: about 30 MB: a scan's entry is ~300 bytes).
MAX_REPORT_BYTES = 256 * 2**20


#: Key of the report of several models (``spinelabel evaluate-model --json``): a list of ``{"report": ...}`` entries.
MODELS_REPORT_KEY = "models"


def _is_report(doc: Any) -> bool:
    """Whether a JSON document has the keys of a report (:func:`report_to_dict`), or is a report of several models
    (:data:`MODELS_REPORT_KEY`, each entry's ``report`` one)."""
    if isinstance(doc, dict) and isinstance(doc.get(MODELS_REPORT_KEY), list) and doc[MODELS_REPORT_KEY]:
        return all(isinstance(m, dict) and _is_report(m.get("report")) for m in doc[MODELS_REPORT_KEY])
    return isinstance(doc, dict) and all(key in doc for key in REPORT_KEYS)


def check_report_target(path: Path) -> None:
    """Refuse to write a report over anything but a new ``.json`` name or an earlier report.

    The predictions, reviewed results and ground-truth files an evaluation reads
    are JSON too: ``--json`` naming one of them by a slip would replace a
    person's corrections or the reference itself with the report.

    Raises
    ------
    OutputError
        ``path`` does not end in .json, is no file name (``io.outputs.check_output_target``),
        lies in a folder that cannot be written, or holds something other than a report.
    """
    from .io.outputs import check_output_target, check_writable_folder, existing_result

    if not path.name.lower().endswith(".json"):
        raise OutputError(f"the report's name must end in .json: {path}")
    check_output_target(path)
    check_writable_folder(path.parent)  # a read-only folder: before the report is computed and printed
    if os.path.lexists(path) and not _is_report(existing_result(path, MAX_REPORT_BYTES)):
        raise OutputError(f"{path} holds something other than an evaluation report (a result or annotations?): "
                          "not replaced; name another file")


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    """A JSON-serialisable dict (undefined rates are null; distances in mm, 3 decimals)."""
    rep = report
    return {
        "match_radius_mm": rep.match_radius_mm,
        "overall": {
            "n_scans": rep.n_scans,
            "n_gt": rep.n_gt,
            "n_pred": rep.n_pred,
            "tp": rep.tp,
            "fn": rep.fn,
            "fp": rep.fp,
            "outside": rep.outside,
            "sensitivity": rep.sensitivity,
            "precision": rep.precision,
            "error_mm": {
                "mean": _r(rep.error_mean_mm),
                "median": _r(rep.error_median_mm),
                "p95": _r(rep.error_p95_mm),
                "max": _r(rep.error_max_mm),
            },
            "n_identified": rep.n_identified,
            "identification_rate": rep.identification_rate,
            "n_identified_glocker": rep.n_identified_glocker,
            "glocker_identification_rate": rep.glocker_identification_rate,
            "n_scans_correct": rep.n_scans_correct,
            "scan_accuracy": rep.scan_accuracy,
        },
        "per_level": {k: {"identified": a, "total": b} for k, (a, b) in rep.per_level.items()},
        "per_scan": [
            {
                "scan": r.scan_id,
                "has_prediction": r.has_prediction,
                "n_gt": r.n_gt,
                "n_pred": r.n_pred,
                "tp": r.tp,
                "fn": r.fn,
                "fp": r.fp,
                "outside": r.n_outside,
                "mean_error_mm": _r(r.mean_error_mm),
                "all_correct": r.all_correct,
                "mislabeled": [{"gt": g, "pred": p} for g, p in r.mislabeled],
                "missed": list(r.missed),
                "false_positives": list(r.false_positives),
                "outside_labels": list(r.outside),
                "glocker_identified": list(r.glocker_identified),
                "duplicate_pred_labels": list(r.duplicate_pred_labels),
                "matches": [
                    {"gt": m.gt_label, "pred": m.pred_label, "distance_mm": _r(m.distance_mm)} for m in r.matches
                ],
            }
            for r in rep.per_scan
        ],
        "missing_predictions": list(rep.missing_predictions),
        "unannotated_predictions": list(rep.unannotated_predictions),
    }
