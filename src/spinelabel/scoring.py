"""Label annotated scans with one or more models and score each against the annotations.

What ``spinelabel evaluate-model`` runs: how a hospital checks a model (the shipped one, or one fine-tuned on its
own reviewed scans, docs/training.md) on scans that a person has named and that the model did not train on. The
composition of ``io.load_image``, ``pipeline.label_loaded`` (the one labeling path of ``spinelabel label``) and
``evaluation.evaluate``; each image is read once and labeled by every model in turn, so only one image is held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, NothingFoundError, SpinelabelError
from .evaluation import MODELS_REPORT_KEY, EvaluationReport, check_some_left, evaluate, report_to_dict
from .scan_annotation import ScanAnnotation

if TYPE_CHECKING:
    from .io import LoadedImage

__all__ = ["ModelScore", "held_out_scans", "score_models", "scores_to_dict"]


@dataclass(frozen=True)
class ModelScore:
    """One model's labels of the annotated scans, scored."""

    #: The model as given (a shipped region name or a model folder), or ``shipped REGION`` for the default.
    model: str
    report: EvaluationReport
    #: Scans the model named nothing in (``NothingFoundError``, or another error while labeling, which
    #: ``on_problem`` is told): in ``report`` as scans with every level missed.
    refused: tuple[str, ...]


def score_models(
    annotations: Sequence[ScanAnnotation],
    models: Sequence[str | None],
    region: str,
    match_radius_mm: float,
    check_orientation: bool = True,
    on_problem: Callable[[str], None] | None = None,
) -> list[ModelScore]:
    """Label every annotated scan whose image can be read with each of ``models`` and score the names.

    Parameters
    ----------
    annotations : sequence of ScanAnnotation
        Each with its ``image`` (a file or DICOM folder; ``series_uid`` picks a series there).
    models : sequence of str or None
        Shipped region names or model folders (``pipeline.make_labeler``), each loaded once; None: the region's
        shipped model.
    region : str
        The region the models label (``auto`` only with shipped models).
    match_radius_mm : float
        ``evaluation.evaluate``'s matching radius; ``check_orientation``: the upside-down check (``pipeline``).
    on_problem : callable, optional
        Receives one line per scan left out (no image named, one that cannot be read, every label outside it: not
        the models' doing, so not counted against them) and per scan whose labels outside its image are left out
        (as ``train`` leaves them out). None: ignored.

    Returns
    -------
    list of ModelScore
        One per model, in the order given, over the same scans.

    Raises
    ------
    InputError
        No annotated scan is given, or none names an image that can be read.
    ModelError
        A model cannot be loaded.
    """
    from .pipeline import make_labeler

    check_some_left(annotations)  # before any model is loaded
    models = list(dict.fromkeys(models))  # a model given twice is labeled with and reported once
    names = [f"shipped {region}" if m is None else str(m) for m in models]
    labelers = {name: make_labeler(region, m, check_orientation=check_orientation) for name, m in zip(names, models)}
    scored, preds, refused = _label_all(annotations, labelers, on_problem or (lambda line: None))
    return [ModelScore(n, evaluate(preds[n], scored, match_radius_mm=match_radius_mm), tuple(refused[n])) for n in names]


Predictions = dict[str, list[tuple[str, np.ndarray]]]  # scan id -> [(label, (3,) position mm)], as evaluation reads


def _label_all(
    annotations: Sequence[ScanAnnotation], labelers: dict[str, Any], report_problem: Callable[[str], None]
) -> tuple[list[ScanAnnotation], dict[str, Predictions], dict[str, list[str]]]:
    """Each readable scan labeled by every labeler (by model name): (the scans read, per model its predictions and
    the ids of the scans it named nothing in).

    Raises
    ------
    InputError
        No scan could be read.
    """
    from .pipeline import label_loaded

    scored: list[ScanAnnotation] = []
    preds: dict[str, Predictions] = {name: {} for name in labelers}
    refused: dict[str, list[str]] = {name: [] for name in labelers}
    for ann in annotations:
        loaded = _read(ann, report_problem)
        kept = None if loaded is None else _inside(ann, loaded, report_problem)
        if loaded is None or kept is None:
            continue
        scored.append(kept)
        for name, labeler in labelers.items():
            try:
                result = label_loaded(labeler, loaded)
            except SpinelabelError as exc:  # one scan never stops the others
                refused[name].append(ann.scan_id)
                if not isinstance(exc, NothingFoundError):  # "no vertebrae found" is the model's answer; else say why
                    report_problem(f"scan {ann.scan_id!r}, model {name}: {exc}; counted as named nothing")
                continue
            preds[name][ann.scan_id] = [(v.label, np.asarray(v.position_mm)) for v in result.vertebrae]
        del loaded  # one image held at a time: freed before the next is read
    if not scored:
        raise InputError("no annotated scan names an image that can be read: nothing to label")
    return scored, preds, refused


def _read(ann: ScanAnnotation, report_problem: Callable[[str], None]) -> LoadedImage | None:
    """The image of one annotated scan, or None (and one line) where it names none or it cannot be read."""
    from .io import load_image

    if ann.image is None:
        report_problem(f"{ann.source or ann.scan_id}: scan {ann.scan_id!r} names no image; left out")
        return None
    try:
        return load_image([Path(ann.image)], series_uid=ann.series_uid)
    except SpinelabelError as exc:
        report_problem(f"scan {ann.scan_id!r}: {exc}; left out")
        return None


def _inside(ann: ScanAnnotation, loaded: LoadedImage, report_problem: Callable[[str], None]) -> ScanAnnotation | None:
    """The scan's labels that lie in its image (as ``train`` keeps them), with one line for those left out; None
    (and one line) when none does: labels outside the image cannot be found by any model, so they are not counted
    as its misses."""
    from .cleaning import LPS_HINT, labels_inside_image, outside_cause

    inside, outside, lps = labels_inside_image(loaded.volume.affine, loaded.volume.shape, ann.points)
    if not outside:
        return ann
    if not inside:
        report_problem(f"scan {ann.scan_id!r}: all {len(outside)} of its labels lie outside its image "
                       f"({outside_cause(lps)}); left out")
        return None
    report_problem(f"scan {ann.scan_id!r}: {', '.join(outside)} left out: outside the image"
                   + (f" ({LPS_HINT})" if lps else ""))
    return replace(ann, points=inside)


def held_out_scans(scans: Sequence[ScanAnnotation], split: Path | None) -> list[ScanAnnotation]:
    """The scans whose ids a split file's "validation" list names (those ``train --exclude`` left out); all of
    them without a file.

    Raises
    ------
    InputError
        The split file cannot be read, or none of its ids is among ``scans``.
    """
    if split is None:
        return list(scans)
    from .training.data import validation_ids

    keep = validation_ids(split)
    kept = [a for a in scans if a.scan_id in keep]
    if not kept:
        raise InputError(f"--held-out {split}: none of its {len(keep)} 'validation' scan ids is among the annotations")
    return kept


def scores_to_dict(scores: Sequence[ModelScore]) -> dict[str, Any]:
    """The JSON report of several models: ``{"models": [{"model", "named_nothing_in", "report"}, ...]}``."""
    return {MODELS_REPORT_KEY: [{"model": s.model, "named_nothing_in": list(s.refused),
                                 "report": report_to_dict(s.report)} for s in scores]}
