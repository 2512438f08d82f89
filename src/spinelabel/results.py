"""What labeling returns: the result types and the one flag threshold, shared by the pipeline and the writers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .warning_codes import LabelWarning

#: Below this confidence a label is flagged for the reader to check.
LOW_CONFIDENCE = 0.5

#: What became of the upside-down check (``pipeline.Labeler.orientation_warnings``), recorded with each result:
#: the image turned head to foot was named too (any outcome is among the warnings) ...
UPSIDE_DOWN_CHECKED = "done"
#: ... it was not needed: the labeling had no sure name, or a warning already doubts its count ...
UPSIDE_DOWN_NOT_NEEDED = "not needed"
#: ... or it was switched off (``--trust-orientation``: an archive whose images are stored as their headers say).
UPSIDE_DOWN_SKIPPED = "skipped"


@dataclass(frozen=True)
class Vertebra:
    """One labeled vertebra: name, world RAS mm (3,), input voxel index (3,), confidence in [0, 1]."""

    label: str
    position_mm: np.ndarray
    voxel: np.ndarray
    confidence: float


@dataclass(frozen=True)
class LabelResult:
    """The labeled vertebrae of one image (cranial to caudal), with the region and model that named them."""

    region: str
    model_name: str
    model_version: str
    vertebrae: list[Vertebra]
    warnings: list[LabelWarning] = field(default_factory=list)
    n_candidates: int = 0
    #: SHA-256 of the weights (hex): a model trained elsewhere keeps the shipped
    #: name and version, so only this tells which network named the vertebrae.
    #: Empty for a result read from a document written before it was recorded.
    model_sha256: str = ""
    #: ``UPSIDE_DOWN_CHECKED``, ``UPSIDE_DOWN_NOT_NEEDED`` or ``UPSIDE_DOWN_SKIPPED``; empty for a result read
    #: from a document written before it was recorded.
    upside_down_check: str = ""
