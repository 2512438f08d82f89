"""The labeling pipeline: volume -> candidates (CNN) -> labels (graphical model)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import anatomy
from .anatomy import region_for_levels
from .errors import InputError, ModelError, NothingFoundError
from .geometry import Volume, describe_grid
from .results import LOW_CONFIDENCE, UPSIDE_DOWN_CHECKED, UPSIDE_DOWN_NOT_NEEDED, UPSIDE_DOWN_SKIPPED, LabelResult, Vertebra
from .threads import thread_count

if TYPE_CHECKING:
    from .carried_count import CountingSeries
    from .io import LoadedImage
    from .labeling_params import LabelingParams
    from .warning_codes import LabelWarning

__all__ = [
    "LOW_CONFIDENCE", "SHIPPED_MODEL", "AutoLabeler", "LabelResult", "Labeler", "Vertebra", "checking_region", "label_loaded",
    "label_loaded_to_files", "label_to_files", "make_labeler", "read_counting_chain", "read_counting_series",
]

#: The shipped model that serves each region. The cervical model was trained on
#: cervical and whole-spine phantoms plus real lumbar scans, so it also knows
#: every level of a whole-spine scan.
SHIPPED_MODEL: dict[str, str] = {"lumbar": "lumbar", "cervical": "cervical", "whole": "cervical"}
#: The regions a model trained for a region can label (its ``config.region`` -> ``--region``): a lumbar
#: model has never seen C2 nor the cervicothoracic junction, so it labels lumbar only; the cervical
#: model also counts down to the thoracic spine for ``whole`` (``SHIPPED_MODEL``), and a whole-spine
#: model covers the cervical region. A model given with ``--model`` for another region is refused:
#: its detection settings and shape model are another region's, and the names would be quietly wrong.
MODEL_SERVES: dict[str, tuple[str, ...]] = {"lumbar": ("lumbar",), "cervical": ("cervical", "whole"),
                                            "whole": ("whole", "cervical")}
#: The region ``--region auto`` asks when its whole-chain survey names nothing. The survey runs
#: the cervical model, which was fine-tuned on three real subjects of one contrast and is blind
#: to contrasts the lumbar model (67 real scans) still reads: on STIR-like lumbar scans the survey
#: found nothing where ``--region lumbar`` named every level (docs/NOTES.md, twenty-sixth session).
FALLBACK_REGION = "lumbar"


def _load_model(model: str | Path, threads: int | None = None) -> tuple[Any, Any]:
    """(config, network prepared for inference) of a shipped model or model directory; sets the thread count."""
    import torch

    from .models import load_model
    from .models.network import prepare_for_inference

    torch.set_num_threads(thread_count(threads))
    config, net = load_model(model)
    return config, prepare_for_inference(net)


#: Key of ``ModelConfig.labeling`` whose entries override the rest for one region.
PER_REGION_KEY = "regions"


def labeling_overrides(labeling: dict[str, Any] | None, region: str) -> dict[str, Any]:
    """``LabelingParams`` keyword arguments from a model's labeling settings, for one region.

    ``labeling`` maps parameter names to values (JSON lists for tuples); its
    optional ``"regions"`` entry maps a region name to overrides that apply to
    that region only (one model serves cervical and whole-spine labeling, whose
    anchors differ).
    """
    settings = dict(labeling or {})
    settings.update(settings.pop(PER_REGION_KEY, {}).get(region, {}))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


class Labeler:
    """Holds a loaded model and labels any number of volumes with it.

    Parameters
    ----------
    config : ModelConfig
    net : torch.nn.Module
        Maps (B, 1, H, W) slices to (B, 2, H, W): heatmap logit, level offset.
        Tests pass a dummy here.
    region : str, optional
        The anatomical region (default: the model's own).
    check_orientation : bool, optional
        Run the upside-down check (``orientation_warnings``; default). False
        for images known to be stored as their headers say: the check's
        second pass of the network is skipped, and each result says so.
    """

    def __init__(self, config, net, region: str | None = None, check_orientation: bool = True):
        from .labeling import LabelingParams
        from .shape_model import ShapeModel

        self.config, self.net = config, net
        self.region = anatomy.REGIONS[region or config.region]
        self.shape = ShapeModel.from_dict(config.shape_model)
        self.params = LabelingParams(**labeling_overrides(config.labeling, self.region.name))
        self.check_orientation = check_orientation

    @classmethod
    def load(cls, model: str | Path = "lumbar", region: str | None = None, threads: int | None = None,
             check_orientation: bool = True) -> "Labeler":
        """Load a shipped model by region name, or a model directory (checksum verified); see ``thread_count``.

        Raises
        ------
        ModelError
            Missing or corrupt weights, or a config whose region, shape model or labeling settings are unusable.
        """
        config, net = _load_model(model, threads)
        try:
            return cls(config, net, region, check_orientation)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited or foreign config.json
            raise ModelError(f"model {model}: unusable config ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None

    def detect(self, volume: Volume) -> list:
        """The vertebra candidates of one volume (any orientation): one pass of the network.

        Returns
        -------
        list of labeling.Candidate
            World RAS mm positions, scores, level estimates and anchor probabilities.
        """
        from .detection import candidates_from_heatmaps, predict_heatmaps

        return candidates_from_heatmaps(predict_heatmaps(volume, self.config, self.net), self.config)

    def name(self, candidates: list, params: LabelingParams | None = None):
        """The chain model's labeling (``labeling.LabelingResult``) of candidates, with this labeler's region and shape
        (and its ``params`` unless others are given)."""
        from .labeling import label_candidates

        return label_candidates(candidates, self.region, self.shape, params or self.params)

    def detect_and_name(
        self, volume: Volume, candidates: list | None = None, counting: "CountingSeries | None" = None,
    ) -> tuple[list, Any]:
        """The candidates and their labeling (``labeling.LabelingResult``) that ``label`` reports, without its checks.

        ``candidates`` and ``counting``: as for ``label`` (the names follow the
        count carried from ``counting``; ``label`` adds what it says). Where the model's
        ``caudal_turns_deg`` asks for it, the candidates found beyond the
        chain's caudal end on turned slices are added (``_look_beyond``);
        where its ``split_body_max_mm`` does and the chain skips a level, the
        bodies split in two in that gap (``_look_between``).
        """
        from .carried_count import carry_names
        from .detection import candidates_from_heatmaps, model_frame_image, predict_heatmaps

        frame = None
        if candidates is None:  # one resampling for both passes
            maps = predict_heatmaps(volume, self.config, self.net)
            candidates, frame = candidates_from_heatmaps(maps, self.config), maps.frame
        if counting is not None:
            candidates = carry_names(candidates, counting)
        result = self.name(candidates)
        if self.config.detection.caudal_turns_deg and result.vertebrae:
            frame = model_frame_image(volume, self.config) if frame is None else frame
            candidates, result = self._look_beyond(frame, candidates, result, counting)
        return self._look_between(candidates, result, counting)

    def _carried(self, candidates: list, result, counting: "CountingSeries"):
        """``result`` (named with the names ``counting`` carried to ``candidates``) with what it says about them.

        ``carried_count.carried_warnings`` against the same candidates named
        without the carried names: where the two differ, the result says so.
        """
        from dataclasses import replace

        from .carried_count import carried_warnings

        own = self.name([replace(c, carried_level=None) for c in candidates])
        return replace(result, warnings=[*carried_warnings(counting, candidates, result, own), *result.warnings])

    def _look_beyond(self, frame: Volume, candidates: list, result, counting: "CountingSeries | None" = None):
        """Candidates and labeling once more, with those found beyond the chain's caudal end on turned slices.

        ``detection.candidates_beyond`` on the model-frame image ``frame``; the
        chain model decides whether they continue it (the labeling of the
        plain candidates is one of its options). They take the names
        ``counting`` carries as the plain candidates do.
        """
        from .carried_count import carry_names
        from .detection import candidates_beyond

        end = min((v.position for v in result.vertebrae), key=lambda p: p[2])
        extra = candidates_beyond(frame, self.config, self.net, np.asarray(end, float), candidates)
        if not extra:
            return candidates, result
        if counting is not None:
            extra = carry_names(extra, counting)
        candidates = [*candidates, *extra]
        return candidates, self.name(candidates)

    def _look_between(self, candidates: list, result, counting: "CountingSeries | None" = None):
        """Candidates and labeling once more where the chain skipped a level, with the bodies split in its gaps.

        ``detection.split_bodies`` of the candidates between two consecutive
        named vertebrae whose levels are not neighbours (``skipped_spans``),
        where the model's ``split_body_max_mm`` asks for it; the chain model
        decides whether such a body fills the gap, and its labeling is taken
        only where the bodies fill gaps and every other name stays, no surer
        than before (``labeling_warnings.gap_filled``). A chain without a gap
        is left as it is. The bodies take the names ``counting`` carries as
        the plain candidates do.
        """
        from .carried_count import carry_names
        from .detection import split_bodies
        from .labeling_warnings import gap_filled

        if self.config.detection.split_body_max_mm is None:
            return candidates, result
        spans = skipped_spans(result.vertebrae)
        inside = [c for c in candidates if any(low < c.position[2] < high for low, high in spans)]
        extra = split_bodies(inside, self.config.detection)
        if not extra:
            return candidates, result
        if counting is not None:
            extra = carry_names(extra, counting)
        more = [*candidates, *extra]
        filled = gap_filled(result, self.name(more), len(candidates), self.params)
        return (candidates, result) if filled is result else (more, filled)

    def label(self, volume: Volume, candidates: list | None = None, counting: "CountingSeries | None" = None) -> LabelResult:
        """Find and name the vertebrae of one volume (any orientation).

        Parameters
        ----------
        volume : Volume
        candidates : list of labeling.Candidate, optional
            This labeler's own ``detect(volume)``, when it was already run
            (``AutoLabeler``): the network is not run again (except on the
            slices near the chain's caudal end, turned, where the model's
            ``caudal_turns_deg`` asks for it: ``_look_beyond``).
        counting : carried_count.CountingSeries, optional
            Another series of the patient, in the volume's frame of
            reference, whose count the names follow
            (``read_counting_series``; ``carried_count``).

        A labeling that reads as sure is named again on the image turned head
        to foot (``orientation_warnings``, unless ``check_orientation`` is
        off): a warning, never a name, comes of it; the result's
        ``upside_down_check`` says whether this was done.

        Raises
        ------
        NothingFoundError
            If fewer than two vertebrae are found (not a spine image, or not this region).
        InputError
            ``counting`` reaches none of the vertebrae named.
        """
        candidates, result = self.detect_and_name(volume, candidates, counting)
        self.check_spine(candidates, result)
        if counting is not None:
            result = self._carried(candidates, result, counting)
        check, orientation = self.orientation_warnings(volume, result)
        warnings = [*result.warnings, *orientation]
        vertebrae = [
            Vertebra(v.label, np.asarray(v.position, float), volume.world_to_voxel(v.position), float(v.confidence))
            for v in result.vertebrae
        ]
        return LabelResult(
            region=self.region.name,
            model_name=self.config.name,
            model_version=self.config.version,
            vertebrae=vertebrae,
            model_sha256=self.config.sha256,
            warnings=warnings,
            n_candidates=len(candidates),
            upside_down_check=check,
        )

    def orientation_warnings(self, volume: Volume, result) -> tuple[str, list["LabelWarning"]]:
        """The upside-down check (``labeling_warnings.orientation_check``) of a labeling that reads as sure.

        A second pass of the network and the chain model, on the image turned
        head to foot (``geometry.turned_head_foot``), for a labeling with a sure
        name and no ``count`` warning (``orientation_in_question``); nothing
        for other labelings, or when the turned image is no spine to this model.
        The turned image's plain candidates are named, without the look beyond
        the chain's caudal end (``_look_beyond``): that look runs the network
        again on turned slices, about half the pass's time, and on the shared
        scans moved no decision of the check (docs/NOTES.md, forty-seventh session).

        Returns
        -------
        check : str
            ``results.UPSIDE_DOWN_CHECKED``, ``UPSIDE_DOWN_NOT_NEEDED``, or
            ``UPSIDE_DOWN_SKIPPED`` when ``check_orientation`` is off.
        warnings : list of LabelWarning
            The check's warning, or none.
        """
        from .geometry import turned_head_foot
        from .labeling_warnings import orientation_check, orientation_in_question

        if not self.check_orientation:
            return UPSIDE_DOWN_SKIPPED, []
        if not orientation_in_question(result.vertebrae, result.warnings, self.params):
            return UPSIDE_DOWN_NOT_NEEDED, []
        candidates = self.detect(turned_head_foot(volume))
        turned = self.name(candidates)
        try:
            self.check_spine(candidates, turned)
        except NothingFoundError:
            return UPSIDE_DOWN_CHECKED, []
        return UPSIDE_DOWN_CHECKED, orientation_check(result.vertebrae, turned.vertebrae)

    def check_spine(self, candidates: list, result) -> None:
        """Refuse a labeling that is no spine: too few sure vertebrae, or a chain that explains too few detections.

        Whether these are vertebrae at all, not whether their count is sure: a
        chain whose names are uncertain is returned, flagged, not refused.

        Parameters
        ----------
        candidates : list of labeling.Candidate
        result : labeling.LabelingResult
            Their labeling (``name``).

        Raises
        ------
        NothingFoundError
            Fewer than ``min_candidates`` vertebrae or ``min_confident`` sure
            ones, or fewer than ``min_explained_fraction`` of the strong
            detections along the chain (``within_chain_span``) in it.
        """
        confident = sum(v.vertebra_probability >= LOW_CONFIDENCE for v in result.vertebrae)
        settings = self.config.detection
        if len(result.vertebrae) < settings.min_candidates or confident < settings.min_confident:
            raise NothingFoundError(
                f"no vertebrae found ({len(candidates)} candidates, {confident} vertebrae with probability "
                f">= {LOW_CONFIDENCE}): is this a sagittal {self.region.name} spine MR?"
            )
        chain = np.array([v.position for v in result.vertebrae], float)
        within = within_chain_span([c.position for c in candidates], chain)
        strong = {i for i, c in enumerate(candidates) if c.score >= LOW_CONFIDENCE and within[i]}
        explained = sum(v.candidate_index in strong for v in result.vertebrae)
        if explained < settings.min_explained_fraction * len(strong):
            raise NothingFoundError(
                f"no vertebrae found: only {explained} of the {len(strong)} strong detections along the best chain "
                f"are vertebrae of it: is this a sagittal {self.region.name} spine MR? (in a contrast the model was "
                "not trained on the network responds to other structures too, and a chain picked among them is not "
                "safe to name)"
            )


class AutoLabeler:
    """Decides the region from the image, then labels with that region's model.

    A first pass labels the whole chain with ``survey`` (a labeler whose model
    knows every level); the confident labels give the field of view
    (:func:`region_for_levels`), and the matching labeler gives the answer.
    When the survey names nothing, the ``FALLBACK_REGION`` labeler answers
    if it names that region's anchor (S1) with confidence.

    Parameters
    ----------
    survey : Labeler
        Region "whole".
    by_region : dict of str to Labeler
        One labeler per region ("lumbar", "cervical", "whole").
    """

    def __init__(self, survey: Labeler, by_region: dict[str, Labeler]):
        from dataclasses import replace

        self.survey, self.by_region = survey, by_region
        # the survey asks which levels are in view, not how sure their count is: the whole-chain survey's only anchor
        # is C2, so every lumbar scan would be "unanchored" and its names held below the flag threshold
        self.survey_params = replace(survey.params, unanchored_confidence=None)

    @classmethod
    def load(cls, threads: int | None = None, check_orientation: bool = True) -> "AutoLabeler":
        """The shipped models, each loaded once (``check_orientation``: as for ``Labeler``)."""
        models = {name: _load_model(name, threads) for name in set(SHIPPED_MODEL.values())}
        by_region = {region: Labeler(*models[name], region, check_orientation) for region, name in SHIPPED_MODEL.items()}
        return cls(by_region["whole"], by_region)

    def choose_region(self, volume: Volume) -> str:
        """The region that fits the image (raises NothingFoundError when no spine is seen).

        The survey only has to say which levels are in view: it names the
        candidates without the checks of ``Labeler.label`` (the chosen
        region's labeler applies them), which a whole-chain model can fail on
        a lumbar scan full of strong lateral detections.
        """
        return self._survey(volume)[0]

    def _survey(
        self, volume: Volume, counting: "CountingSeries | None" = None,
    ) -> tuple[str, list | None, LabelResult | None]:
        """The chosen region, the survey's candidates, and the answer when the fallback gave it.

        When the survey names nothing, the ``FALLBACK_REGION`` labeler reads
        the image with its own checks (``_fallback``): its answer is final.
        """
        candidates = self.survey.detect(volume)
        first = self.survey.name(candidates, self.survey_params)
        if not first.vertebrae:
            return FALLBACK_REGION, None, self._fallback(volume, counting)
        confident = [v.label for v in first.vertebrae if v.confidence >= LOW_CONFIDENCE]
        return region_for_levels(confident or [v.label for v in first.vertebrae]), candidates, None

    def _fallback(self, volume: Volume, counting: "CountingSeries | None" = None) -> LabelResult:
        """The fallback region's labeling of an image the survey cannot read, or NothingFoundError.

        Accepted only when it names the region's anchor (S1) with confidence:
        the survey decides a region from its confident labels, and the sacrum
        seen and named is positive evidence of a lumbar field of view, where a
        chain without it rests on the level estimates alone. A neck in a
        contrast neither model knows can draw low-confidence lumbar names; it
        has no sacrum to name.
        """
        refusal = f"no vertebrae found: is this a sagittal spine MR? ({self.survey.region.name} survey"
        labeler = self.by_region[FALLBACK_REGION]
        try:
            result = labeler.label(volume) if counting is None else labeler.label(volume, counting=counting)
        except NothingFoundError as exc:
            raise NothingFoundError(f"{refusal}; the {FALLBACK_REGION} model finds none either)") from exc
        anchors = anatomy.REGIONS[FALLBACK_REGION].anchors
        if not any(v.label in anchors and v.confidence >= LOW_CONFIDENCE for v in result.vertebrae):
            raise NothingFoundError(f"{refusal}; the {FALLBACK_REGION} model names no {'/'.join(anchors)} with confidence)")
        return result

    def label(self, volume: Volume, counting: "CountingSeries | None" = None) -> LabelResult:
        """Label with the chosen region's labeler; the result's ``region`` says which.

        When the chosen labeler runs the survey's own network and detection
        settings (cervical and whole spine share the cervical model), the
        survey's candidates are reused: the network runs once per image.
        ``counting``: as for ``Labeler.label`` (the region is chosen without it).
        """
        region, candidates, answer = self._survey(volume, counting)
        if answer is not None:
            return answer
        chosen = self.by_region[region]
        same_detector = chosen.net is self.survey.net and chosen.config is self.survey.config
        return chosen.label(volume, candidates if same_detector else None, counting)


def checking_region(levels: Iterable[str], region: str) -> str:
    """The region whose shipped model checks a scan labeled with ``levels`` in a ``region`` training set.

    The region the labels show (:func:`region_for_levels`) when it has a
    different shipped model, else ``region``: a cervical model names a
    lumbar scan with a cervical chain (spacings half the lumbar ones) and can
    lay it on the pedicles beside the bodies, and the cleaner would then drop
    every right label as "beside the spine's mid-plane" (zukic-13, docs/NOTES.md,
    twenty-sixth session).

    >>> checking_region(["L1", "L2", "L3"], "cervical"), checking_region(["C3", "C4"], "whole")
    ('lumbar', 'whole')
    """
    shown = region_for_levels(list(levels))
    return shown if SHIPPED_MODEL.get(shown) not in (None, SHIPPED_MODEL.get(region)) else region


def skipped_spans(vertebrae: Iterable) -> list[tuple[float, float]]:
    """(lower z, upper z) in world mm between each two consecutive named vertebrae whose levels are not neighbours.

    ``vertebrae``: ``labeling.LabeledVertebra`` (label, position). Levels
    are neighbours when their ``anatomy.ordinal`` differ by at most 1 (a
    transitional level lies half-way between two).
    """
    named = sorted(vertebrae, key=lambda v: anatomy.ordinal(v.label))
    return [
        (float(lower.position[2]), float(upper.position[2]))
        for upper, lower in zip(named, named[1:])
        if anatomy.ordinal(lower.label) - anatomy.ordinal(upper.label) > 1
    ]


def within_chain_span(positions: npt.ArrayLike, chain: npt.ArrayLike) -> np.ndarray:
    """Which positions lie along a chain's length: between its end vertebrae, or half a spacing beyond.

    The spine-plausibility check counts only these detections. Beyond the
    chain's ends lie the levels it leaves unnamed (a partial chain; on real
    cervical scans the dim cervicothoracic junction draws strong detections
    that fit no level), which say nothing about whether the chain is a spine;
    within its length every strong detection is either one of its vertebrae
    or clutter that a real spine would not leave. The margin is half a step of
    the chain, taken as the distance between its end vertebrae divided by its
    number of steps (a little less than the mean spacing on a curved chain): the
    distance at which a detection stops being a candidate for the next level
    and becomes one for a level beyond it.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        World mm.
    chain : ndarray, shape (M, 3)
        The chain's vertebrae in order (either end first), world mm.

    Returns
    -------
    ndarray of bool, shape (N,)
        Along the chain, measured on the line through its end vertebrae;
        everything when the chain has fewer than two vertebrae.
    """
    positions = np.asarray(positions, float).reshape(-1, 3)
    chain = np.asarray(chain, float).reshape(-1, 3)
    axis = chain[-1] - chain[0] if len(chain) else np.zeros(3)
    length = float(np.linalg.norm(axis))
    if len(chain) < 2 or length == 0.0:
        return np.ones(len(positions), bool)
    margin = 0.5 * length / (len(chain) - 1)
    t = (positions - chain[0]) @ (axis / length)
    return (t >= -margin) & (t <= length + margin)


def check_model_name(model: str | Path | None) -> None:
    """Refuse an empty ``--model`` (an unset shell variable), which would otherwise mean the shipped model.

    Raises
    ------
    InputError
        ``model`` is a string of white space only.
    """
    if isinstance(model, str) and not model.strip():
        raise InputError("--model is empty: give a shipped region name or a model folder, or leave the option out")


def make_labeler(
    region: str = "lumbar", model: str | Path | None = None, threads: int | None = None, *, check_orientation: bool = True,
) -> "Labeler | AutoLabeler":
    """The labeler of a region: the region's shipped model, or ``model``; "auto" decides per image.

    ``threads``: torch intra-op threads of this process (default ``thread_count()``).
    ``check_orientation``: run the upside-down check (``Labeler``; default),
    off for an archive whose images are known to be stored as their headers say.

    The one place where a region is mapped to a model (``SHIPPED_MODEL``):
    every command that labels goes through it.

    Raises
    ------
    InputError
        Unknown region, an empty model name, a model directory with region
        "auto", or a model trained for a region that cannot serve ``region``
        (``MODEL_SERVES``).
    ModelError
        The model cannot be found or loaded.
    """
    check_model_name(model)
    if region == "auto":
        if model is not None:
            raise InputError("--model needs an explicit region (lumbar, cervical or whole), not auto")
        return AutoLabeler.load(threads, check_orientation)
    if region not in anatomy.REGIONS:
        raise InputError(f"unknown region {region!r}; choose from auto, {', '.join(anatomy.REGIONS)}")
    labeler = Labeler.load(model or SHIPPED_MODEL[region], region, threads, check_orientation)
    trained = labeler.config.region if model is not None else region  # a shipped model serves its region
    if region not in MODEL_SERVES.get(trained, (trained,)):
        raise InputError(f"model {model} was trained for --region {trained}: it cannot label --region {region}")
    return labeler


def label_loaded(
    labeler: "Labeler | AutoLabeler", loaded: "LoadedImage", counting: "CountingSeries | None" = None,
) -> LabelResult:
    """Label an image read by ``io.load_image``; the reader's warnings come first in the result.

    Irregular slice spacing, a missing slice or a gantry-tilted grid is found
    while reading a DICOM series (a sheared grid or forms that disagree while
    reading a NIfTI header); the user sees it beside the labels (stderr and
    the JSON ``warnings``), not only in a log. ``counting``: another series
    whose count the names follow (``read_counting_series``), refused when its
    frame of reference is not the image's (``carried_count.check_same_frame``).
    """
    from dataclasses import replace

    if counting is not None:
        from .carried_count import check_same_frame

        check_same_frame(loaded, counting)
    try:
        result = labeler.label(loaded.volume) if counting is None else labeler.label(loaded.volume, counting=counting)
    except NothingFoundError as exc:  # a wrong voxel size or orientation in the header shows here, so name them
        raise NothingFoundError(f"{exc} [{describe_grid(loaded.volume)}]") from None
    reader = list(loaded.warnings)
    return replace(result, warnings=[*reader, *result.warnings]) if reader else result


def label_to_files(
    labeler: "Labeler | AutoLabeler", inputs: Iterable[str | Path], series: str | None, json: Path | None = None,
    overlay: Path | None = None, sr: Path | None = None, gsps: Path | None = None, stack: str | None = None,
    *, label_map: Path | None = None, counting: "CountingSeries | None" = None,
) -> LabelResult:
    """Read one image, label it, and write the requested outputs (None: not written): all of them or none.

    The one read-label-write path of ``spinelabel label``, of every batch item
    (``batch.run_task``) and, with the image read kept, of every series
    retrieved from a PACS (``pacs.label_series``). ``series`` and ``stack`` pick what is read of
    the DICOM inputs (``io.load_image``); ``counting`` as for ``label_loaded``.

    Raises
    ------
    SpinelabelError
        The image cannot be read or labeled, or an output cannot be written
        (then no output of this image is left behind).
    """
    from .io import load_image

    loaded = load_image([Path(p) for p in inputs], series_uid=series, stack=stack)
    return label_loaded_to_files(labeler, loaded, json, overlay, sr, gsps, label_map=label_map, counting=counting)


def label_loaded_to_files(
    labeler: "Labeler | AutoLabeler", loaded: "LoadedImage", json: Path | None = None, overlay: Path | None = None,
    sr: Path | None = None, gsps: Path | None = None, *, label_map: Path | None = None,
    counting: "CountingSeries | None" = None,
) -> LabelResult:
    """Label an image already read and write the requested outputs (None: not written): all of them or none.

    :func:`label_to_files` after its reading; also what ``spinelabel demo``
    runs on its built-in phantom, which is made in memory, not read.
    ``label_map``: a NIfTI point-label image on the input's grid
    (``io.outputs.label_map``).

    Raises
    ------
    SpinelabelError
        As :func:`label_to_files`.
    """
    from .io.dicom_label_write import write_gsps, write_sr
    from .io.outputs import (
        check_output_names, check_scan_outputs, render_overlay, write_all_or_nothing, write_json, write_label_map,
    )

    if (sr is not None or gsps is not None) and loaded.dicom is None:
        raise InputError(f"DICOM SR/GSPS output needs a DICOM input, but {loaded.source} is a NIfTI file")
    check_scan_outputs(json, overlay, sr, gsps, label_map, _files_read(loaded))  # a refusal costs no network pass
    result = label_loaded(labeler, loaded, counting)
    writers = [
        (json, lambda p: write_json(result, loaded.source, p)),
        (overlay, lambda p: render_overlay(loaded.volume, result, p)),
        (sr, lambda p: write_sr(result, loaded.dicom, p)),
        (gsps, lambda p: write_gsps(result, loaded.dicom, p)),
        (label_map, lambda p: write_label_map(result, loaded.volume, p)),
    ]
    write_all_or_nothing(  # a review saved while this scan was labeled is not replaced either
        [(path, write) for path, write in writers if path is not None], _files_read(loaded),
        before_replace=lambda: check_output_names(json=json),
    )
    return result


def read_counting_series(
    inputs: Iterable[str | Path], series: str | None = None, stack: str | None = None, threads: int | None = None,
    *, check_orientation: bool = True, name: str | None = None, counting: "CountingSeries | None" = None,
    labeler: "Labeler | AutoLabeler | None" = None,
) -> "CountingSeries":
    """Read and label (``--region auto``, the shipped models) a series to carry the count from (``label --count-from``).

    ``series``, ``stack``: as for ``label_to_files``; ``threads`` and
    ``check_orientation`` as for ``make_labeler``; ``name``: what messages
    and results call the series (default: the inputs, or the image read);
    ``counting``: the series its own count is carried from (a chain of
    series, :func:`read_counting_chain`); ``labeler``: the ``--region auto``
    labeler to use (default: loaded here).

    Raises
    ------
    SpinelabelError
        The series cannot be read or labeled (the message names it), or its
        count is not sure enough to carry (``carried_count.counting_series``).
    """
    from dataclasses import replace

    from .carried_count import counting_series
    from .errors import SpinelabelError
    from .io import load_image

    paths = [Path(p) for p in inputs]
    try:
        loaded = load_image(paths, series_uid=series, stack=stack)
        reader = labeler or make_labeler("auto", threads=threads, check_orientation=check_orientation)
        result = label_loaded(reader, loaded, counting)
    except SpinelabelError as exc:  # the reader names the labeled series' options: these are the counting series'
        text = re.sub(r"(?<![\w-])--(series|stack)\b(?!-)", r"--count-from-\1", str(exc))
        raise type(exc)(f"counting series {name or ', '.join(map(str, paths))}: {text}") from None
    return counting_series(result, loaded if name is None else replace(loaded, source=name), counting)


def read_counting_chain(
    links: Sequence[tuple[Path, str | None, str | None]], threads: int | None = None, *, check_orientation: bool = True,
) -> "CountingSeries":
    """Read a chain of counting series, each counted from the one before (:func:`read_counting_series`).

    ``links``: (input, series, stack) of each, the one that names C2 first:
    the stations of a whole-spine study (neck, thoracic spine), each
    overlapping the next by a vertebra. One ``--region auto`` labeler reads
    them all.

    Raises
    ------
    SpinelabelError
        A link cannot be read or labeled, does not reach the one before, or
        cannot carry the count on (the message names it).
    """
    labeler = make_labeler("auto", threads=threads, check_orientation=check_orientation)
    counting = None
    for path, series, stack in links:
        counting = read_counting_series([path], series, stack, counting=counting, labeler=labeler)
    if counting is None:
        raise ValueError("a chain of counting series needs at least one")
    return counting


def _files_read(loaded: "LoadedImage") -> list[Path]:
    """The files an image was read from: a DICOM series' files, or the NIfTI file (none for an image made in memory)."""
    if loaded.dicom is not None:
        return list(loaded.dicom.files)
    return [Path(loaded.source)] if loaded.kind == "nifti" and Path(loaded.source).is_file() else []
