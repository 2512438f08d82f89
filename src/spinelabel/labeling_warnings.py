"""What the chain model's chosen labeling tells a reader to check: warnings and the confidence ceilings.

Pure functions over a labeling (``LabeledVertebra`` list) and what the chain
model saw (:mod:`spinelabel.labeling` composes them). Each warning says what
the names rest on and what to verify; none changes a name. One rule chooses
between two labelings: ``gap_filled``, whether a body assembled from two
detections may fill a gap (``pipeline.Labeler`` calls it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from .anatomy import BODILESS_LEVELS, BODY_HEIGHT_MM, Region
from .labeling_params import LabeledVertebra, LabelingParams, LabelingResult
from .warning_codes import LabelWarning, count_at_risk

#: The advice every warning about the count ends with.
COUNT_YOURSELF = "count from a landmark to verify"
#: The transitional vertebra that gives the same count as each other one: 25 vertebrae above the sacrum are a
#: T13 or an L6, which a sagittal view of the bodies cannot tell apart (the ribs, or their absence, can).
OTHER_VARIANT = {"L6": "T13", "T13": "L6"}


def gap_warnings(labels: Sequence[str], levels: Sequence[str]) -> list[LabelWarning]:
    """Warnings for levels of the chain ``levels`` skipped between consecutive ``labels``."""
    out = []
    for upper, lower in itertools.pairwise(labels):
        missing = levels[levels.index(upper) + 1 : levels.index(lower)]
        if missing:
            names = ", ".join(missing)
            out.append(LabelWarning("missed-level", f"missed detection: no vertebra found at {names} (between {upper} and {lower})"))
    return out


def end_warnings(vertebrae: Sequence[LabeledVertebra], above: Sequence[str], below: Sequence[str]) -> list[LabelWarning]:
    """Warnings for levels beyond the labeled range's ends that the image should show whole but that have no vertebra.

    ``above`` and ``below``: the levels the chain model paid as missed above
    the first and below the last named vertebra (``labeling._missed_beyond``).
    A level without a body (``anatomy.BODILESS_LEVELS``: C1) is left out: a
    body-centre detector finds C1's ring only as often as not
    (``LabelingParams.bodiless_miss_cost``), so its absence says nothing.
    """
    if not vertebrae:
        return []
    out = []
    for levels, side, end in ((above, "above", vertebrae[0].label), (below, "below", vertebrae[-1].label)):
        bodied = [lv for lv in levels if lv not in BODILESS_LEVELS]
        if bodied:
            out.append(LabelWarning(
                "missed-at-end",
                f"missed detection: no vertebra found at {', '.join(bodied)} {side} {end}, where the image should "
                f"show it: any vertebrae {side} {end} are unnamed — look {side}",
            ))
    return out


def unanchored(vertebrae: Sequence[LabeledVertebra], anchors: Sequence[str]) -> bool:
    """Whether a region with anchors has vertebrae named and none of them at an anchor level."""
    return bool(vertebrae) and bool(anchors) and not any(v.label in anchors for v in vertebrae)


def capped(vertebrae: list[LabeledVertebra], anchors: Sequence[str], params: LabelingParams) -> list[LabeledVertebra]:
    """``vertebrae`` with each confidence at most ``params.unanchored_confidence`` when no anchor is named."""
    ceiling = params.unanchored_confidence
    if ceiling is None or not unanchored(vertebrae, anchors):
        return vertebrae
    return [replace(v, confidence=min(v.confidence, ceiling)) for v in vertebrae]


def labeling_warnings(
    vertebrae: list[LabeledVertebra],
    n: int,
    params: LabelingParams,
    anchors: Sequence[str] = (),
    anchor_probs: Sequence[float] = (),
    chain: tuple[tuple[str, ...], tuple[str, ...], float] = ((), (), 0.0),
) -> list[LabelWarning]:
    """Warnings about a labeling of ``n`` candidates.

    Parameters
    ----------
    anchor_probs : sequence of float
        The anchor head's probabilities of the vertebrae labeled as an anchor
        level (NaN where the detector has no anchor head).
    chain : (levels, variant, offset)
        The chosen chain's levels, its transitional variant and the scan-wide
        offset of the level estimates (empty where nothing was solved).
    """
    levels, variant, offset = chain
    out = []
    known = [p for p in anchor_probs if not np.isnan(p)]  # the anchor head's view of the named anchors
    if unanchored(vertebrae, anchors):
        out.append(LabelWarning(
            "no-anchor",
            f"no anchor vertebra ({' or '.join(anchors)}) labeled: the level names rest on the network's level "
            f"estimates and the spacing alone and may be shifted by one level — {COUNT_YOURSELF}",
        ))
    elif vertebrae and known and max(known) < params.anchor_confirmation:
        named = "/".join(v.label for v in vertebrae if v.label in anchors)
        out.append(LabelWarning(
            "anchor-unconfirmed",
            f"{named} labeled, but the anchor detector does not confirm it (probability "
            f"{max(known):.2f} < {params.anchor_confirmation:.2f}): the level names "
            f"rest on the network's level estimates and the spacing and may be shifted by one level — {COUNT_YOURSELF}",
        ))
    if n == 0:
        out.append(LabelWarning("no-candidates", "no vertebra candidates were given: nothing to label"))
    if len(vertebrae) < params.min_vertebrae:
        out.append(LabelWarning(
            "few-vertebrae",
            f"only {len(vertebrae)} vertebra(e) labeled (fewer than {params.min_vertebrae}): "
            "too few to check spacing, labels unreliable",
        ))
    out.extend(LabelWarning("transitional", f"transitional anatomy: {v} labeled — verify counting ({OTHER_VARIANT[v]} "
                            "gives the same count of vertebrae above the sacrum: the ribs tell them apart)")
               for v in variant)
    out.extend(gap_warnings([v.label for v in vertebrae], levels))
    if vertebrae and abs(offset) >= params.offset_warning_levels:
        out.append(LabelWarning(
            "level-offset",
            f"the network's level estimates read {abs(offset):.1f} level(s) {'below' if offset > 0 else 'above'} "
            f"the names: the anchor and the level estimates disagree about the count — {COUNT_YOURSELF}",
        ))
    return out + low_confidence_warnings(vertebrae, params)


def low_confidence_warnings(vertebrae: Sequence[LabeledVertebra], params: LabelingParams) -> list[LabelWarning]:
    """The warning that lists the names below ``params.low_confidence``, or none."""
    low = [f"{v.label} ({v.confidence:.2f})" for v in vertebrae if v.confidence < params.low_confidence]
    if not low:
        return []
    return [LabelWarning(
        "low-confidence",
        f"low confidence (< {params.low_confidence:.2f}) for {', '.join(low)}: the labels may be shifted "
        "by a level or a candidate may be spurious — verify",
    )]


def anchor_rivals(
    named: Mapping[int, str],
    pos: np.ndarray,
    score: np.ndarray,
    anchor: np.ndarray,
    anchors: Sequence[str],
    params: LabelingParams,
) -> list[LabelWarning]:
    """A warning when a left-out candidate is a better anchor than the confirmed one named.

    Leaving a candidate out costs little where its detection score is
    modest, and nothing for its anchor output unless ``anchor_unassigned``.
    So a chain that takes L5 for S1 can drop the true S1 below it, which the
    anchor head rates higher, and stay sure of every name (zukic-07 under a
    MyoSegmenTUM-only network, with or without ``anchor_unassigned``). This
    check sees that contradiction; see ``LabelingParams.anchor_rival_score``.

    Parameters
    ----------
    named : mapping of int to str
        Candidate (row of the arrays) -> the level the chain gives it.
    pos : ndarray, shape (n, 3)
    score, anchor : ndarray, shape (n,)
        Detection scores and anchor-head probabilities (NaN where unavailable).
    """
    unnamed = np.ones(len(score), bool)
    unnamed[list(named)] = False
    strong_unnamed = unnamed & (score >= params.anchor_rival_score)
    out = []
    for j, level in named.items():
        p = float(anchor[j])
        if level not in anchors or np.isnan(p) or p < params.anchor_confirmation:
            continue  # an unconfirmed or missing anchor already warns (labeling_warnings)
        far = np.linalg.norm(pos - pos[j], axis=1) > BODY_HEIGHT_MM[level] / 2.0
        rivals = np.flatnonzero(strong_unnamed & far & (anchor > p))
        if len(rivals):
            k = rivals[np.argmax(anchor[rivals])]
            where = "below" if pos[k, 2] < pos[j, 2] else "above"
            out.append(LabelWarning(
                "anchor-rival",
                f"{level} named on a candidate of anchor probability {p:.2f}, but a detection {where} it "
                f"(score {score[k]:.2f}) that the chain left out has {anchor[k]:.2f}: the level names may "
                f"be shifted by one level — {COUNT_YOURSELF}",
            ))
    return out


def direction_check(vertebrae: Sequence[LabeledVertebra], plain: Mapping[int, str]) -> list[LabelWarning]:
    """A warning when the best labeling without the learned step directions names a candidate otherwise.

    The directions and the appearance (level estimates, anchor head) are two
    lines of evidence about the count. Where they agree the names stand on
    both; where the directions alone move the count, a steep L4 -> L5 step
    above a cut-off sacrum can pass for the lumbosacral turn (issue 11:
    myoseg-32, S1 out of view), so the result is flagged.

    Parameters
    ----------
    plain : mapping of int to str
        Candidate index -> its name in the best labeling without directions.
    """
    moved = [f"{v.label} ({plain[v.candidate_index]})" for v in vertebrae if plain.get(v.candidate_index, v.label) != v.label]
    if not moved:
        return []
    return [LabelWarning(
        "direction-dependent",
        f"the level names rest on the spine's curvature: without the learned step directions they would be "
        f"{', '.join(moved)} — {COUNT_YOURSELF}",
    )]


#: By how much (summed confidence) the names of the image as its header has it must beat those of the
#: image turned head to foot for the orientation to go unquestioned. 0: a tie or a loss warns. Measured
#: (docs/NOTES.md, forty-sixth session; the shipped lumbar v7 and cervical models) on the 70 shared scans:
#: upright, those with a sure name and no count warning beat their turned image by 0.40 or more
#: (myoseg-52 the least); stored upside down, those named surely without a count warning (8 scans) lost to
#: their turned, upright image by 0.51 to 3.85 (myoseg-15 the least). 0 sits between the two; in-sample,
#: so the benchmarks watch it.
ORIENTATION_MARGIN = 0.0


def orientation_in_question(vertebrae: Sequence[LabeledVertebra], warnings: Sequence[LabelWarning],
                            params: LabelingParams) -> bool:
    """Whether a labeling reads as trustworthy, so that an upside-down image would go unnoticed.

    A labeling with no name at ``params.low_confidence`` or above, or one that
    already carries a warning of concern ``count``, tells its reader to count
    for themselves: checking its orientation adds nothing (and costs a second
    pass of the network).
    """
    return any(v.confidence >= params.low_confidence for v in vertebrae) and not count_at_risk(warnings)


def orientation_check(given: Sequence[LabeledVertebra], turned: Sequence[LabeledVertebra]) -> list[LabelWarning]:
    """A warning when the image turned head to foot (``geometry.turned_head_foot``) is named more surely.

    The network reads a spine turned upside down as a spine (it does not know
    up from down, docs/NOTES.md, thirty-eighth session), so an image stored
    upside down under an upright header is named in reverse, often surely.
    Its right way up is then the turned image, whose names come out surer:
    the sum of the confidences of ``turned`` reaches that of ``given`` less
    ``ORIENTATION_MARGIN``.

    Parameters
    ----------
    given, turned : sequence of LabeledVertebra
        The labeling of the image as its header has it, and of the image turned.
    """
    as_given = sum(v.confidence for v in given)
    as_turned = sum(v.confidence for v in turned)
    if as_given - as_turned > ORIENTATION_MARGIN:
        return []
    return [LabelWarning(
        "upside-down",
        f"the image turned head to foot is named more surely than as its header has it (summed confidence "
        f"{as_turned:.1f} against {as_given:.1f}): it may be stored upside down (a feet-first patient registered "
        f"head-first, or rows flipped without the header) and every name reversed — check on the overlay that "
        f"the head is at the top, then {COUNT_YOURSELF}",
    )]


def uncountable_variant_warning(variant: Sequence[str], region: Region, params: LabelingParams) -> LabelWarning:
    """The warning for a transitional chain that fits better where a variant cannot be counted."""
    return LabelWarning(
        "uncountable-variant",
        f"the spacing and level estimates fit a transitional vertebra ({', '.join(variant)}) better, but this "
        f"field of view does not reach from {params.variant_span[0]} to {params.variant_span[1]}, so it cannot be "
        f"counted: levels are named from the {' / '.join(region.anchors)} end — verify the count "
        "(transitional anatomy?)",
    )


#: The most an assembled body's name is trusted (``gap_filled``): just below ``LabelingParams.low_confidence``
#: (0.5), so that the name is flagged, not only the scan warned. Two detections 12-26 mm apart in a gap of the
#: chain are the halves of a body split by an artefact (pedicle screws' void and rim: 10 of the 16 wrong scans of
#: the held-out split under severe metal) or two small vertebrae with one missed (myoseg-49, leave one source
#: out), and the image cannot tell which (docs/NOTES.md, forty-eighth session).
ASSEMBLED_BODY_CONFIDENCE = 0.49


def gap_filled(plain: LabelingResult, filled: LabelingResult, first_assembled: int, params: LabelingParams) -> LabelingResult:
    """The labeling ``filled`` where bodies assembled from two detections only fill gaps of ``plain``, else ``plain``.

    An assembled body (``detection.split_bodies``) may name a level the
    chain skipped; it may not move the count. ``filled`` is taken only if
    it names every vertebra of ``plain`` as ``plain`` does, with the same
    transitional variant, and names nothing else but assembled bodies. Its
    names are then no surer than without the body (a filled gap made a
    chain wrong by a level look surer: zukic-19, docs/NOTES.md,
    forty-eighth session): each of ``plain``'s keeps the lower of its two
    confidences, and each assembled one is at most
    ``ASSEMBLED_BODY_CONFIDENCE``, with an ``assembled-body`` warning.

    Parameters
    ----------
    plain, filled : LabelingResult
        The chain model's labeling of the candidates without and with the
        assembled bodies.
    first_assembled : int
        Candidate index of the first assembled body (they follow the detections).
    """
    before = {v.candidate_index: v for v in plain.vertebrae}
    after = {v.candidate_index: v.label for v in filled.vertebrae}
    added = [v for v in filled.vertebrae if v.candidate_index not in before]
    kept = all(after.get(i) == v.label for i, v in before.items()) and filled.variant == plain.variant
    if not added or not kept or any(v.candidate_index < first_assembled for v in added):
        return plain
    vertebrae = [
        replace(v, confidence=min(v.confidence, before[v.candidate_index].confidence)) if v.candidate_index in before
        else replace(v, confidence=min(v.confidence, ASSEMBLED_BODY_CONFIDENCE))
        for v in filled.vertebrae
    ]
    names = ", ".join(v.label for v in added)
    assembled = LabelWarning(
        "assembled-body",
        f"{names} named on a body assembled from two detections in a gap of the chain (one body split by an "
        f"artefact such as metal or a fracture cleft, or two vertebrae): verify it is one vertebra — {COUNT_YOURSELF}",
    )
    redone = ("missed-level", "low-confidence")
    warnings = [w for w in plain.warnings if w.code not in redone] + [w for w in filled.warnings if w.code == "missed-level"]
    return replace(filled, vertebrae=vertebrae, warnings=[*warnings, assembled, *low_confidence_warnings(vertebrae, params)])
