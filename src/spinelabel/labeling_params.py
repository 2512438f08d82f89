"""The chain model's inputs, costs and outputs: candidates, the named and justified constants, labels.

The model itself (its equations) is in :mod:`spinelabel.labeling`, which
re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .anatomy import ANCHOR_LEVELS
from .warning_codes import LabelWarning


@dataclass(frozen=True)
class Candidate:
    """One vertebra candidate from the detector.

    Attributes
    ----------
    position : ndarray, shape (3,)
        Vertebral body centre, world RAS mm.
    score : float
        Detector probability in (0, 1].
    level_estimate : float or None
        The CNN's regression of ``anatomy.ordinal(level)`` here, if available.
    level_sd : float
        Trust in ``level_estimate``, in levels (a Gaussian sd).
    anchor : float or None
        The CNN's probability that this is an anchor level (C2 or S1), if available.
    room_mm : tuple of float or None
        How far the image reaches from here cranially (+z) and caudally (-z), in
        mm (``geometry.distance_to_edge``); None when unknown (no field-of-view
        term).
    carried_level : str or None
        The name another series of the same patient, in the same frame of
        reference, gives the vertebra at this position: its count, carried
        over (``carried_count``; ``spinelabel label --count-from``). None
        where no such series is given or none of its vertebrae lies here.
    carried_from : str
        The anchor the carried count starts from: ``"C2"`` (a count from C1
        down, as a whole-spine or cervical series counts) or ``"S1"`` (a count
        from S1 up, as a lumbar series counts; ``labeling.count_place``).
    """

    position: np.ndarray
    score: float
    level_estimate: float | None = None
    level_sd: float = 1.5
    anchor: float | None = None
    room_mm: tuple[float, float] | None = None
    carried_level: str | None = None
    carried_from: str = "C2"


@dataclass(frozen=True)
class LabelingParams:
    """Costs of the chain model (nats); every number the search uses lives here."""

    #: Cost per level skipped between two assigned candidates (a missed
    #: detection). ~ -log(0.05): the detector misses roughly 1 in 20 vertebrae
    #: inside the field of view.
    miss_cost: float = 3.0
    #: Miss cost of a level without a vertebral body (``anatomy.BODILESS_LEVELS``,
    #: C1): -log(0.5), a body-centre detector finding C1's ring as often as not.
    bodiless_miss_cost: float = 0.7
    #: A level beyond the end of a labeled range counts as missed when its
    #: expected centre lies at least this fraction of its spacing to the
    #: neighbour inside the image: half a spacing (half a body plus half a
    #: disc) puts the whole body in view; partly cut bodies are not expected.
    edge_margin_fraction: float = 0.5
    #: Only this many levels beyond each end of a labeled range are charged as
    #: missed. The next level is what decides a one-level shift (a lumbar
    #: chain stopping at "L5" above a sacrum); further levels fade together,
    #: not one by one, as coil coverage and image quality fall off towards an
    #: image's edge (the lower thoracic spine of a cervical scan), and charging
    #: each of them independently made a good partial chain cost more than
    #: labeling nothing at all.
    edge_levels: int = 1
    #: Scale on -log(1 - score) for leaving a candidate unassigned. 1.0 makes the
    #: assign / reject costs the two halves of a Bernoulli likelihood of a
    #: calibrated detector score.
    false_positive_weight: float = 1.0
    #: A body cut by the image edge shows only its inner part, and the detector
    #: may place it at the centre of what is in view: up to half its height
    #: (``anatomy.BODY_HEIGHT_MM``, at the chain's scale) minus the room between
    #: the candidate and that edge inward of the true centre. A step to or from
    #: such a candidate may then be that much longer than measured, and the
    #: spacing term charges only a shortfall beyond it (a step measured too long
    #: is charged as before). Issue 11, class 3: myoseg-32's S1, cut through by
    #: the lower edge, was found 21 mm below L5 where ~30 mm is expected, and
    #: the chain took L5 for S1 instead. False: distances as measured.
    edge_slack: bool = True
    #: Width (mm) of the uniform background a step's length is compared with,
    #: or None. With it the spacing term is a log-likelihood ratio, as the
    #: direction term is: the Gaussian's normaliser ``log(s sd sqrt(2 pi))``
    #: is added and ``log(spacing_range_mm)`` taken off, so a step that fits
    #: its levels earns up to ``log(range / (s sd sqrt(2 pi)))`` nats against
    #: "the lower candidate lies anywhere along the chain", and a chain is no
    #: longer charged alike for a well-placed step and for leaving a body out
    #: (a cut S1 below L5, a dim T1 below C7: docs/NOTES.md, seventeenth
    #: session). None, the default and the shipped models' setting: the
    #: penalty without its normaliser. Measured and not shipped
    #: (twenty-second session): at 14 mm, held-out +1 scan, leave one source
    #: out +1 over two seeds, robustness -2; at 20 mm and above the chain
    #: takes a sacral segment or a lateral detection to earn more steps.
    spacing_range_mm: float | None = None
    #: The vector from an upper to the next lower vertebra must point caudally
    #: within this angle of -z. Lumbosacral and cervical lordosis tilt it by up to
    #: ~45 deg in supine MR; 60 deg leaves room for scoliosis and patient tilt
    #: while forbidding side-by-side and anterior (non-spine) candidates.
    max_angle_deg: float = 60.0
    #: Direction cost ``direction_weight * (angle / max_angle)**2``: a mild
    #: preference for the cranio-caudal axis (1 nat at the limit).
    direction_weight: float = 1.0
    #: Degrees of freedom of the Student-t cost on a step's learned sagittal
    #: direction. A heavy tail: the learned sd comes from healthy spines in
    #: one posture, and a listhesis, a fracture or another posture must cost a
    #: few nats, not tens (4 dof: 3 sd cost 2.9 nats against a Gaussian's 4.5,
    #: 5 sd 5.0 against 12.5), while the 3-4 sd between an L4 -> L5 step and
    #: an L5 -> S1 step still weigh about as much as a missed vertebra.
    direction_dof: float = 4.0
    #: Width (deg) of the uniform background a step's sagittal direction is
    #: compared with: any direction within ``max_angle_deg`` either side of
    #: straight caudal. As a likelihood ratio the direction term is 0 for
    #: pairs without a learned direction and for a step that fits no better
    #: than chance, so a chain is not charged for labeling more steps.
    direction_range_deg: float = 120.0
    #: Scan-wide tilts ``phi`` (deg) added to every learned step direction.
    #: The patient's posture (pelvic tilt, a knee cushion) and the slice
    #: plane turn all steps of one scan alike: over the shared lumbar scans
    #: whole spines sit up to ~15 deg steeper (zukic-07: L4 -> L5 24, L5 -> S1
    #: 55) or flatter (myoseg-13: 10 and 13) than their source's median. Like
    #: the level offset, one consistent deviation then counts once, and what
    #: names the steps is the shape of the curve (the lumbosacral turn below
    #: a straighter lumbar spine). 7.5 deg steps cost at most
    #: (3.75 / 8)**2 / 2 = 0.11 nats per step of quantisation.
    tilt_grid_deg: tuple[float, ...] = (-15.0, -7.5, 0.0, 7.5, 15.0)
    #: Prior sd of that tilt (deg): the between-patient spread of supine
    #: lumbar posture, about the ~10 deg by which the two shared sources'
    #: median lumbosacral steps differ.
    tilt_sd_deg: float = 10.0
    #: Use the shape model's learned step directions at all (off: spacings only).
    use_directions: bool = True
    #: Global patient-size factors tried on the shape model: 7 log-spaced steps
    #: over +-25 % (body-size range of adults and adolescents); a step of 7.7 %
    #: is about 0.6 of the prior spacing sd, so quantisation costs < 0.05 per pair.
    scale_grid: tuple[float, ...] = (0.8, 0.862, 0.928, 1.0, 1.077, 1.16, 1.25)
    #: Scan-wide offsets ``delta`` of the CNN's level estimates tried (levels).
    #: Half-level steps: between two grid points the quantisation costs at most
    #: n (0.25 / sd)**2 / 2 for n candidates (0.2 nats for seven at sd 1).
    #: +-1.5 covers the largest per-scan bias seen (about one level, issue #11).
    level_offset_grid: tuple[float, ...] = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
    #: Prior sd of that offset (levels). Held-out scans of the training
    #: sources showed per-scan biases of +-0.8 level (myoseg-32, zukic-20) and
    #: scans from other hospitals about one level: with an sd of one level a
    #: whole-chain shift by one level costs only 0.5 nats, so names that rest on
    #: the level estimates alone get confidences below 0.5 (1 / (1 + 2 e^-0.5)
    #: = 0.45 with shifts either way open), and an anchor or the field of view
    #: must decide the count.
    level_offset_sd: float = 1.0
    #: Scan-wide gains ``g`` of the level estimates tried: the estimate of
    #: level ``l`` is modelled as ``ordinal(l) + delta + (g - 1) * (ordinal(l) -
    #: pivot)``, the pivot being the middle of the levels whose spacings the
    #: shape model learned (``labeling._gain_pivot``). A network extrapolates poorly beyond the levels it was
    #: trained on: trained on the source whose fields of view start at T12
    #: (MyoSegmenTUM), its estimates on scans reaching T10 (Zukic) were
    #: compressed towards S1, 0.77 levels per level (IQR 0.67-0.79, 17 scans),
    #: while inside its training range the slope is 1.0 (0.97-1.02: the shipped
    #: model on the held-out split; 0.98 the Zukic-trained one on MyoSegmenTUM;
    #: fourteenth session). Over a compressed chain one offset cannot fit, and
    #: nine estimates outvote the anchor: the chain shifted by a level fits them
    #: better (zukic-07). Every gain costs the same: which one holds is not known
    #: beforehand, and the count is left to the anchor and the field of view.
    #: (1.0,), the default, switches it off. Off in the shipped models
    #: (docs/NOTES.md, fourteenth session): with (0.75, 1.0) about S1 the
    #: held-out split lost a scan (a gain about a level outside the chain
    #: mimics a shift); about the learned levels' middle it kept 26/28 and
    #: gained 3 of 34 other-source scans, but the robustness benchmark lost
    #: one (298/336) and the scan that motivated it stayed wrong. A model
    #: trained on narrow fields of view may need it (``ModelConfig.labeling``).
    level_gain_grid: tuple[float, ...] = (1.0,)
    #: Prior cost of a chain with a transitional variant (L6, T13): about
    #: log(0.9 / 0.1), supernumerary lumbar / thoracic segments being found in
    #: roughly 5-10 % of patients.
    variant_cost: float = 2.2
    #: Softmax temperature for confidences; 1.0 treats the costs as nats.
    temperature: float = 1.0
    #: Scores are clipped into [eps, 1 - eps] so that a score of 1.0 keeps a finite
    #: rejection cost (a detector is never that sure): at most ~6.9 nats.
    score_eps: float = 1e-3
    #: Weight of the anchor evidence: labeling a candidate as an anchor level of
    #: the region costs ``-log(anchor)``, as any other level ``-log(1 - anchor)``
    #: (a Bernoulli likelihood of a calibrated anchor probability).
    anchor_weight: float = 1.0
    #: The anchor head's output is a Bernoulli likelihood for every candidate,
    #: not only for those the chain names: a candidate left out (a false
    #: positive) is "not the anchor" and pays ``-log(1 - anchor)`` as one named
    #: at a non-anchor level does, and so does one named at an anchor level
    #: that ``anchor_levels`` leaves out. Without it, a chain that takes L5 for
    #: S1 leaves the true S1 below it out at no cost for its anchor output,
    #: while naming it anything but S1 would pay (issue 11: zukic-07 under a
    #: MyoSegmenTUM-only network, the true S1 detected below and left out).
    #: Alone it raised every confidence, wrong ones too ("left out" no longer
    #: takes a share of the posterior; docs/NOTES.md, eighteenth session), so
    #: each name's confidence is the lower of its posteriors with and without
    #: it: the evidence chooses the names and cannot make them surer. Measured
    #: in the twentieth session (docs/NOTES.md). False: the model without it.
    anchor_unassigned: bool = True
    #: Cost of naming a candidate other than the name carried to it from a
    #: counting series (``Candidate.carried_level``): -log(0.001). The
    #: counting series names its vertebrae from its own anchor (C2 on a
    #: whole-spine or cervical series, S1 on a lumbar one) with no doubt about its count
    #: (``carried_count.counting_series``), so a carried name is wrong only
    #: when the patient moved between the two series by about half a body,
    #: taken as 1 in 1000. One carried name then outweighs level estimates
    #: two levels off (2 nats at the shipped models' ``level_sd`` of 1 level)
    #: and the anchor head at its surest (-log ``anchor_eps`` = 3.9 nats);
    #: two or more fix the count. Naming the candidate nothing costs nothing
    #: more: a carried name says where a vertebra is, not that this detection
    #: is the one of its lateral duplicates to name.
    carried_name_cost: float = 6.9
    #: Anchor probabilities are clipped into [eps, 1 - eps]: the anchor head is
    #: trained mostly on phantoms, so no single output may cost more than
    #: ~3.9 nats (about one missed level plus a weak level estimate).
    anchor_eps: float = 0.02
    #: At most this many candidates (the strongest) enter the search. The DP's
    #: memory grows with levels^2 x candidate pairs: 80 candidates on the
    #: whole-spine chain need ~150 MB, while a noise image can give hundreds.
    #: Three per level of the longest chain (26) leaves ample room for false positives.
    max_candidates: int = 80
    #: The levels a labeled range must reach (first at or above, last at or
    #: below) for a transitional variant to be named: a supernumerary segment
    #: is only countable from C2 to the sacrum. A lumbar or cervical field of
    #: view counts from its own anchor instead and warns. A first level of
    #: None: the count from C2 was carried from another series
    #: (``Candidate.carried_level`` with ``carried_from`` C2;
    #: ``label_candidates`` sets it then).
    variant_span: tuple[str | None, str] = ("C2", "S1")
    #: A labeled anchor level (C2, S1) counts as confirmed only when the anchor
    #: head gives its candidate at least this probability: 0.5, the point above
    #: which the head says "anchor" rather than "not an anchor". An anchor named
    #: by the chain alone (from spacing and level estimates) fixes nothing, and
    #: the output warns as when no anchor is labeled. Measured on models trained
    #: on one source and run on the other (docs/RESULTS.md, lumbar leave one
    #: source out): every confidently shifted scan had its "S1" at 0.12-0.39.
    anchor_confirmation: float = 0.5
    #: A candidate the chain leaves out contradicts a confirmed anchor when the
    #: anchor head rates it higher than the named one, it lies outside that
    #: body (farther than half its height, ``anatomy.BODY_HEIGHT_MM``) and the
    #: detector itself calls it a vertebra (score at least this, the point
    #: above which the heatmap says "body" rather than "not a body"): the
    #: chain then rests on a weaker anchor than the scan offers (issue 11:
    #: zukic-07 under a MyoSegmenTUM-only network, L5 named S1 at anchor 0.51
    #: while the true S1 below, score 0.77 and anchor 0.68, is left out; the
    #: last confident shift of leave one source out without a flag or a
    #: warning). It only warns; the names stay the model's.
    anchor_rival_score: float = 0.5
    #: The anchor levels whose anchor-head output the chain uses; None: all of
    #: the region's (``Region.anchors``). An anchor output is evidence only
    #: where the model learned it from real anchors: the cervical model's S1
    #: comes from phantoms only (~0.03 at a phantom's S1, so "not S1" at
    #: every S1), and whole-spine labeling with it counts from C2 alone. An
    #: anchor level left out costs nothing either way (neither ``-log p`` nor
    #: ``-log(1 - p)``; with ``anchor_unassigned``, ``-log(1 - p)`` as any other level).
    anchor_levels: tuple[str, ...] | None = None
    #: Labels with a confidence below this get a warning.
    low_confidence: float = 0.5
    #: When no anchor level (C2, S1) is labeled, the names rest on the
    #: network's level estimates and the spacing alone, and no name is surer
    #: than this: just below ``low_confidence``, so that every such name is
    #: flagged, not only the scan warned. The chain's posterior cannot see a
    #: level bias shared by every estimate of a scan, which is what another
    #: hospital's scans show: with the twelve leave-one-source-out networks,
    #: 28 of 82 scans without a labeled anchor had every name right (34 %),
    #: and 20 of the 54 wrong ones named some level at 0.5 or more
    #: (docs/NOTES.md, thirtieth session). None: no ceiling.
    unanchored_confidence: float | None = 0.49
    #: Fewer labeled vertebrae than this get a warning (no spacing evidence).
    min_vertebrae: int = 2
    #: A chosen scan-wide offset of the level estimates at least this large
    #: (levels) gets a warning: the names then sit a whole level from what
    #: the network reads, so the anchor (or the field of view) and the level
    #: estimates disagree about the count. Half a level is the ordinary
    #: per-scan bias (``level_offset_sd``: +-0.8 on held-out scans of the
    #: training sources); a whole level is either a network biased by a level
    #: (another hospital's scan) or an anchor on the wrong body (a cervical
    #: phantom whose anchor head rates C3 above C2, its C2-C6 named C1-C5 at
    #: 0.50-0.57 with no other warning; docs/NOTES.md, twenty-fifth session),
    #: and the scan cannot tell which. It only warns; the names stay the model's.
    offset_warning_levels: float = 1.0

    def __post_init__(self) -> None:
        # a model's config.json sets these by hand: "no" or 0 for a switch must not quietly mean something
        for f in fields(self):
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"{f.name} must be true or false, not {getattr(self, f.name)!r}")
        span = self.spacing_range_mm  # the log of a width: a string, 0 or a negative would be a traceback or NaN costs
        if span is not None and (isinstance(span, bool) or not isinstance(span, (int, float)) or not 0 < span < np.inf):
            raise ValueError(f"spacing_range_mm must be None or a positive number of mm, not {span!r}")
        levels = self.anchor_levels
        if levels is not None and (not isinstance(levels, tuple) or not set(levels) <= set(ANCHOR_LEVELS)):
            raise ValueError(f"anchor_levels must be None or a tuple of {', '.join(ANCHOR_LEVELS)}, not {levels!r}")


@dataclass(frozen=True)
class LabeledVertebra:
    """One labeled vertebra: its level, the candidate it came from, a confidence in [0, 1].

    ``confidence`` is the posterior of this level; ``vertebra_probability`` the
    posterior that the candidate is a vertebra of the chain at all (any level),
    which stays high when only the count is uncertain.
    """

    label: str
    candidate_index: int
    position: np.ndarray
    confidence: float
    vertebra_probability: float = 1.0


@dataclass(frozen=True)
class LabelingResult:
    """The best labeling.

    Attributes
    ----------
    vertebrae : list of LabeledVertebra
        Cranio-caudal order.
    variant : tuple of str
        ``()`` or the transitional variant of the chosen chain, e.g. ``("L6",)``.
    scale : float
        Chosen patient-size factor of the shape model.
    cost : float
        Total cost (nats) of the labeling, false positives and variant included.
    warnings : list of LabelWarning
        What a reader should check, each a code and a sentence.
    level_offset : float
        Chosen scan-wide offset of the CNN's level estimates (levels).
    level_gain : float
        Chosen scan-wide gain of the CNN's level estimates.
    """

    vertebrae: list[LabeledVertebra]
    variant: tuple[str, ...]
    scale: float
    cost: float
    warnings: list[LabelWarning]
    level_offset: float = 0.0
    level_gain: float = 1.0
