"""A count carried over from another series of the same patient (``spinelabel label --count-from``).

A lumbar (or thoracic) field of view does not show where the count starts:
its names rest on the sacrum, or, where S1 is cut or out of view, on the
network's level estimates alone, and a transitional count cannot be told
from it at all (docs/NOTES.md, issue 11). A radiologist counts such a spine
from C2 on a series that shows it (a whole-spine or cervicothoracic sagittal
series, a large sagittal localizer of the same study) and carries the names
over by position. The other sagittal series of a lumbar study (T1, STIR,
each read on its own at a count of its own) take the names of the series
whose count from S1 is sure, so that the study carries one count. This
module does the same:

- :func:`counting_series`: the named vertebrae of the counting series,
  accepted only when its own count is sure (no warning of concern
  ``count``) and only its names of confidence >= ``LOW_CONFIDENCE``; a
  series that took a count carried from another may carry it on (the
  stations of a whole-spine study: C2 on the first, the thoracic spine on
  the second, the sacrum on the third);
- :func:`check_same_frame`: positions carry over only within one frame of
  reference (and one patient);
- :func:`carry_names`: each candidate of the target series near a counted
  vertebra gets that name as ``Candidate.carried_level``; the chain model
  then pays ``LabelingParams.carried_name_cost`` for naming it otherwise
  (``labeling``);
- :func:`carried_warnings`: what the result says about it, and whether the
  target series alone would have named its vertebrae otherwise.

Positions are world RAS millimetres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .anatomy import VARIANT_AFTER
from .errors import CountNotReachedError, InputError
from .labeling import count_place
from .labeling_params import Candidate, LabeledVertebra, LabelingResult
from .results import LOW_CONFIDENCE, LabelResult
from .warning_codes import LabelWarning, codes, count_at_risk

if TYPE_CHECKING:
    from .io import LoadedImage

#: A candidate takes the name of the counting series' nearest vertebra when
#: it lies within this fraction of that vertebra's distance to its nearest
#: counted neighbour. Below one half, no point is within reach of two
#: vertebrae; 0.35 leaves the other 30 % of the step as a margin against a
#: candidate half-way to the next body. That is 12 mm on a 35 mm lumbar step
#: (about half an L3 body's height) and 6 mm on a 16 mm cervical one: room
#: for the two series' localisation errors (2-3 mm each) and a few mm of
#: patient movement between them, not for a movement of half a body.
CARRY_FRACTION = 0.35
#: The counting series must name at least this many vertebrae surely: two
#: give one step, and a count carried from a single step is carried from a
#: series that could not check its own spacing (``few-vertebrae``).
MIN_COUNTED = 3
#: The anchors a carried count may start from, the first preferred: the
#: counting series must name one surely, or have taken the count of a series
#: that does. A count from C2 runs from C1 down and reaches the place a
#: lumbar or thoracic field of view cannot count from its own image (it
#: makes a transitional vertebra countable with S1 in view); a count from S1
#: runs up from S1 (``labeling.count_place``): what a lumbar series gives the
#: other sagittal series of its study (T1, STIR, a thoracic series), so that
#: every series of the study carries one count.
COUNT_ANCHORS = ("C2", "S1")
#: The warning codes a series that took a carried count may have and still
#: carry it on. ``count-unconfirmed`` says only that the series, without an
#: anchor of its own, would name some vertebrae otherwise at confidence below
#: ``LOW_CONFIDENCE``: what a thoracic station always does, and no evidence
#: against the count it took (``carried_warnings``).
PASSED_ON_DESPITE = frozenset({"count-unconfirmed"})


@dataclass(frozen=True)
class CountingSeries:
    """The named vertebrae a count is carried from.

    Attributes
    ----------
    source : str
        The counting image's description (``LoadedImage.source``).
    names : tuple of str
        Level names, cranial first.
    positions : ndarray, shape (m, 3)
        Their centres, world RAS mm.
    frame_of_reference_uid, patient_id, series_uid : str
        From a DICOM series' header; empty for NIfTI.
    reader_codes : tuple of str
        The codes of the warnings its reader gave (``series-chosen``: a
        folder's only sagittal series was read), repeated where the count is
        carried.
    counted_from : tuple of str
        The series its own count was carried from, the first (the one that
        names the anchor) first; empty when it counts from its own anchor.
    anchor : str
        Where its count starts (one of ``COUNT_ANCHORS``).
    """

    source: str
    names: tuple[str, ...]
    positions: np.ndarray
    frame_of_reference_uid: str = ""
    patient_id: str = ""
    series_uid: str = ""
    reader_codes: tuple[str, ...] = ()
    counted_from: tuple[str, ...] = ()
    anchor: str = COUNT_ANCHORS[0]

    def describe(self) -> str:
        """Its source, with the series its count came through: ``lumbar/ (counted from neck/, thoracic/)``."""
        return f"{self.source} (counted from {', '.join(self.counted_from)})" if self.counted_from else self.source


def counting_series(
    result: LabelResult, loaded: "LoadedImage", carried_from: CountingSeries | None = None,
) -> CountingSeries:
    """The vertebrae of ``result`` (the labeling of ``loaded``) a count may be carried from.

    ``carried_from``: the counting series ``result`` was itself counted from
    (``Labeler.label(..., counting)``); its count is carried on when
    ``result`` took it (``count-carried``) with no doubt but
    ``PASSED_ON_DESPITE``, and ``result`` need not name an anchor. The
    frame of reference and patient of a series without them (NIfTI) are
    those of ``carried_from``: the frame its positions were matched in.

    Raises
    ------
    InputError
        Its count is in doubt (a warning of concern ``count``), it names a
        transitional vertebra, it did not take the count of ``carried_from``,
        or it does not name one of ``COUNT_ANCHORS`` (unless counted) and at least
        ``MIN_COUNTED`` vertebrae with confidence >= ``LOW_CONFIDENCE``.
    """
    tolerated = PASSED_ON_DESPITE if carried_from is not None else frozenset()
    doubt = [w for w in result.warnings if count_at_risk([w]) and w.code not in tolerated]
    if doubt:
        raise InputError(f"counting series {loaded.source}: its own count is in doubt ({', '.join(codes(doubt))}): "
                         "it cannot carry a count")
    variants = [v.label for v in result.vertebrae if v.label in VARIANT_AFTER]
    if variants:
        raise InputError(f"counting series {loaded.source}: it names a transitional vertebra ({', '.join(variants)}): "
                         "carrying such a count is not supported; count the target series by hand")
    sure = [v for v in result.vertebrae if v.confidence >= LOW_CONFIDENCE]
    if carried_from is not None and "count-carried" not in codes(result.warnings):
        raise InputError(f"counting series {loaded.source}: it did not take the count of {carried_from.describe()}: "
                         "it cannot carry it on")
    anchors = [a for a in COUNT_ANCHORS if a in {v.label for v in sure}]
    if carried_from is None and not anchors:
        raise InputError(f"counting series {loaded.source}: it names neither {' nor '.join(COUNT_ANCHORS)} with "
                         f"confidence >= {LOW_CONFIDENCE}: a count is carried from one of them")
    if len(sure) < MIN_COUNTED:
        raise InputError(f"counting series {loaded.source}: only {len(sure)} vertebra(e) named with confidence >= "
                         f"{LOW_CONFIDENCE} (fewer than {MIN_COUNTED}): it cannot carry a count")
    info = loaded.dicom
    own = CountingSeries(loaded.source, tuple(v.label for v in sure),
                         np.array([np.asarray(v.position_mm, float) for v in sure]).reshape(-1, 3),
                         info.frame_of_reference_uid if info is not None else "",
                         info.patient_id if info is not None else "",
                         info.series_instance_uid if info is not None else "",
                         tuple(codes(loaded.warnings)), (), anchors[0] if anchors else COUNT_ANCHORS[0])
    if carried_from is None:
        return own
    chained = replace(own, counted_from=(*carried_from.counted_from, carried_from.source), anchor=carried_from.anchor)
    if info is None:  # NIfTI: the frame its positions were matched in
        chained = replace(chained, frame_of_reference_uid=carried_from.frame_of_reference_uid,
                          patient_id=carried_from.patient_id)
    return chained


def check_same_frame(target: "LoadedImage", counting: CountingSeries) -> None:
    """Refuse a counting series whose positions do not map onto the target's.

    Two DICOM series map onto each other only within one frame of reference
    (``FrameOfReferenceUID``) and one patient; where either is unknown (NIfTI,
    an empty tag) the user's choice of series is trusted.

    Raises
    ------
    InputError
        Both frames of reference, or both patient IDs, are given and differ.
    """
    info = target.dicom
    if info is None:
        return
    for what, mine, theirs in (("patient", info.patient_id, counting.patient_id),
                               ("frame of reference", info.frame_of_reference_uid, counting.frame_of_reference_uid)):
        if mine and theirs and mine != theirs:
            raise InputError(f"counting series {counting.describe()}: another {what} ({theirs}) than {target.source} "
                             f"({mine}): positions in one do not carry over to the other")


def reach_mm(positions: np.ndarray) -> np.ndarray:
    """How far (mm) from each counted vertebra a candidate may lie and take its name.

    Parameters
    ----------
    positions : ndarray, shape (m, 3)
        The counted vertebrae, m >= 2.

    Returns
    -------
    ndarray, shape (m,)
        ``CARRY_FRACTION`` times the distance to the nearest other counted vertebra.
    """
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    return CARRY_FRACTION * d.min(axis=1)


def carry_names(candidates: Sequence[Candidate], counting: CountingSeries) -> list[Candidate]:
    """``candidates`` with ``carried_level`` set where a counted vertebra lies within reach (:func:`reach_mm`)."""
    reach = reach_mm(counting.positions)
    out = []
    for cand in candidates:
        dist = np.linalg.norm(counting.positions - np.asarray(cand.position, float), axis=1)
        j = int(np.argmin(dist))
        out.append(replace(cand, carried_level=counting.names[j] if dist[j] <= reach[j] else None,
                           carried_from=counting.anchor))
    return out


def carried_warnings(
    counting: CountingSeries, candidates: Sequence[Candidate], carried: LabelingResult, own: LabelingResult,
) -> list[LabelWarning]:
    """What a result whose count was carried says about it.

    Parameters
    ----------
    candidates : sequence of Candidate
        The candidates both labelings named (``carry_names``' output).
    carried, own : LabelingResult
        Their labeling with the carried names, and without them.

    Returns
    -------
    list of LabelWarning
        ``count-carried`` (where the names come from), and where the target
        series alone names some of the same vertebrae otherwise:
        ``count-differs`` when it names any of them at confidence >=
        ``LOW_CONFIDENCE`` (two sure counts disagree), else
        ``count-unconfirmed`` (a series with no sure count of its own, such as
        a thoracic station or a lumbar one without S1: the names rest on the
        carried count alone).

        Where the carried names reach vertebrae named here but the chain
        model named every one of them at another place of the count (the
        counting series' count outweighed: a patient who moved between the
        series?), ``count-differs`` says so and nothing else: the names are
        this series' own.

    Raises
    ------
    CountNotReachedError
        No vertebra of the chosen labeling lies within reach of a counted
        one: the two series do not overlap (or do not share a frame), and
        nothing was carried.
    """
    reached = [(was, v.label) for v in carried.vertebrae if (was := candidates[v.candidate_index].carried_level) is not None]
    if not reached:
        raise CountNotReachedError(f"counting series {counting.describe()}: none of its vertebrae "
                         f"({counting.names[0]}-{counting.names[-1]}) lies on a vertebra named here: the two series "
                         "must overlap by a vertebra, in one frame of reference")
    taken = [name for was, name in reached
             if count_place(was, (), counting.anchor) == count_place(name, carried.variant, counting.anchor)]
    if not taken:
        others = "; ".join(f"{name} here, {was} there" for was, name in reached)
        return [LabelWarning("count-differs", f"the count of {counting.describe()} was not taken: every vertebra it "
                             f"reaches is named otherwise here ({others}), so the names are this series' own — "
                             "a patient who moved between the series? Check the count in both")]
    read = f" (its reader: {', '.join(counting.reader_codes)})" if counting.reader_codes else ""
    out = [LabelWarning("count-carried", f"level names counted from {counting.describe()}{read}: {len(taken)} of its "
                        f"vertebrae lie on vertebrae found here, named {', '.join(taken)}")]
    alone = {v.candidate_index: v for v in own.vertebrae}
    moved = [(v.label, alone[v.candidate_index]) for v in carried.vertebrae
             if v.candidate_index in alone and alone[v.candidate_index].label != v.label]
    return out + _disagreement(moved, counting)


def _disagreement(moved: Sequence[tuple[str, LabeledVertebra]], counting: CountingSeries) -> list[LabelWarning]:
    """What ``carried_warnings`` says of the vertebrae the series alone names otherwise: (name here, its own)."""
    if not moved:
        return []
    listing = "; ".join(f"{label} here, {was.label} alone" for label, was in moved)
    if any(was.confidence >= LOW_CONFIDENCE for _, was in moved):
        return [LabelWarning("count-differs", f"this series alone would name {len(moved)} vertebra(e) otherwise "
                             f"({listing}): the names follow the count from {counting.anchor} of {counting.describe()} — "
                             "a transitional vertebra, or a patient who moved between the series? Check the count "
                             "in both")]
    return [LabelWarning("count-unconfirmed", f"the names rest on the carried count alone: this series, with no sure "
                         f"count of its own, would name {len(moved)} vertebra(e) otherwise at confidence below "
                         f"{LOW_CONFIDENCE} ({listing}). Check the count where the series overlap")]
