"""The labeling pipeline: volume -> candidates (CNN) -> labels (graphical model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import anatomy
from .errors import NothingFoundError
from .geometry import Volume

#: Below this confidence a label is flagged for the reader to check.
LOW_CONFIDENCE = 0.5


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
        import torch

        from .models import load_model

        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        config, net = load_model(model)
        return cls(config, net, region)

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
        confident = sum(v.confidence >= LOW_CONFIDENCE for v in result.vertebrae)
        settings = self.config.detection
        if len(result.vertebrae) < settings.min_candidates or confident < settings.min_confident:
            raise NothingFoundError(
                f"no vertebrae found ({len(candidates)} candidates, {confident} labeled with confidence "
                f">= {LOW_CONFIDENCE}): is this a sagittal {self.region.name} spine MR?"
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
