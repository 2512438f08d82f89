"""The labeling pipeline: volume -> candidates (CNN) -> labels (graphical model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import anatomy
from .anatomy import region_for_levels
from .errors import NothingFoundError
from .geometry import Volume

#: Below this confidence a label is flagged for the reader to check.
LOW_CONFIDENCE = 0.5

#: The shipped model that serves each region. The cervical model was trained on
#: cervical and whole-spine phantoms plus real lumbar scans, so it also knows
#: every level of a whole-spine scan.
SHIPPED_MODEL: dict[str, str] = {"lumbar": "lumbar", "cervical": "cervical", "whole": "cervical"}



@dataclass(frozen=True)
class Vertebra:
    """One labeled vertebra: name, world RAS mm (3,), input voxel index (3,), confidence in [0, 1]."""

    label: str
    position_mm: np.ndarray
    voxel: np.ndarray
    confidence: float


@dataclass(frozen=True)
class LabelResult:
    region: str
    model_name: str
    model_version: str
    vertebrae: list[Vertebra]
    warnings: list[str] = field(default_factory=list)
    n_candidates: int = 0


def _load_model(model: str | Path):
    """(config, network) of a shipped model or model directory, with CPU threads capped at 4."""
    import torch

    from .models import load_model

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    return load_model(model)


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
    """

    def __init__(self, config, net, region: str | None = None):
        from .labeling import LabelingParams, ShapeModel

        self.config, self.net = config, net
        self.region = anatomy.REGIONS[region or config.region]
        self.shape = ShapeModel.from_dict(config.shape_model)
        self.params = LabelingParams()

    @classmethod
    def load(cls, model: str | Path = "lumbar", region: str | None = None) -> "Labeler":
        """Load a shipped model by region name, or a model directory (checksum verified)."""
        return cls(*_load_model(model), region)

    def label(self, volume: Volume) -> LabelResult:
        """Find and name the vertebrae of one volume (any orientation).

        Raises
        ------
        NothingFoundError
            If fewer than two vertebrae are found (not a spine image, or not this region).
        """
        from .detection import candidates_from_heatmaps, predict_heatmaps
        from .labeling import label_candidates

        maps = predict_heatmaps(volume, self.config, self.net)
        candidates = candidates_from_heatmaps(maps, self.config)
        result = label_candidates(candidates, self.region, self.shape, self.params)
        # Whether these are vertebrae at all, not whether their count is sure: a
        # chain whose names are uncertain is returned, flagged, not refused.
        confident = sum(v.vertebra_probability >= LOW_CONFIDENCE for v in result.vertebrae)
        settings = self.config.detection
        if len(result.vertebrae) < settings.min_candidates or confident < settings.min_confident:
            raise NothingFoundError(
                f"no vertebrae found ({len(candidates)} candidates, {confident} vertebrae with probability "
                f">= {LOW_CONFIDENCE}): is this a sagittal {self.region.name} spine MR?"
            )
        strong = {i for i, c in enumerate(candidates) if c.score >= LOW_CONFIDENCE}
        explained = sum(v.candidate_index in strong for v in result.vertebrae)
        if explained < settings.min_explained_fraction * len(strong):
            raise NothingFoundError(
                f"no vertebrae found: only {explained} of {len(strong)} strong detections form a chain of "
                f"vertebrae: is this a sagittal {self.region.name} spine MR?"
            )
        vertebrae = [
            Vertebra(v.label, np.asarray(v.position, float), volume.world_to_voxel(v.position), float(v.confidence))
            for v in result.vertebrae
        ]
        return LabelResult(
            region=self.region.name,
            model_name=self.config.name,
            model_version=self.config.version,
            vertebrae=vertebrae,
            warnings=list(result.warnings),
            n_candidates=len(candidates),
        )


class AutoLabeler:
    """Decides the region from the image, then labels with that region's model.

    A first pass labels the whole chain with ``survey`` (a labeler whose model
    knows every level); the confident labels give the field of view
    (:func:`region_for_levels`), and the matching labeler gives the answer.

    Parameters
    ----------
    survey : Labeler
        Region "whole".
    by_region : dict of str to Labeler
        One labeler per region ("lumbar", "cervical", "whole").
    """

    def __init__(self, survey: Labeler, by_region: dict[str, Labeler]):
        self.survey, self.by_region = survey, by_region

    @classmethod
    def load(cls) -> "AutoLabeler":
        """The shipped models, each loaded once."""
        models = {name: _load_model(name) for name in set(SHIPPED_MODEL.values())}
        by_region = {region: Labeler(*models[name], region) for region, name in SHIPPED_MODEL.items()}
        return cls(by_region["whole"], by_region)

    def choose_region(self, volume: Volume) -> str:
        """The region that fits the image (raises NothingFoundError when no spine is seen)."""
        first = self.survey.label(volume)
        confident = [v.label for v in first.vertebrae if v.confidence >= LOW_CONFIDENCE]
        return region_for_levels(confident or [v.label for v in first.vertebrae])

    def label(self, volume: Volume) -> LabelResult:
        """Label with the chosen region's labeler; the result's ``region`` says which."""
        return self.by_region[self.choose_region(volume)].label(volume)
