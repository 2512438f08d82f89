"""Stand-ins for the CNN and small synthetic spines, for tests that exercise the pipeline without a trained model."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import Volume
from ..models import DetectionSettings, ModelConfig


class BlobNet(torch.nn.Module):
    """Stands in for the CNN: heatmap = the (normalised) image, level = unknown."""

    divisor = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (0.8 * x).clamp(1e-4, 1 - 1e-4)  # per pixel, like a real network
        return torch.cat([torch.log(p / (1 - p)), torch.zeros_like(x)], dim=1)


def dummy_config(level_sd: float = 100.0, min_confident: int = 0, region: str = "lumbar") -> ModelConfig:
    """A model config for ``BlobNet``: 2 mm frame, detection threshold 0.5, prior spacings only."""
    return ModelConfig(
        name="dummy", version="0", region=region, axcodes=("R", "I", "P"), inplane_spacing_mm=2.0,
        slice_step_mm=2.0, intensity_percentiles=(1.0, 99.5), channels=(4,), level_offset=22.0,
        level_sd=level_sd, detection=DetectionSettings(threshold=0.5, min_confident=min_confident), shape_model={},
    )


def blob_spine(n: int = 5, spacing_mm: float = 36.0, margin_mm: float | None = None) -> tuple[Volume, np.ndarray]:
    """Gaussian 'bodies' along -z in a 1 mm RAS volume.

    Parameters
    ----------
    margin_mm : float, optional
        Crop the image this far above the first and below the last body, so
        that no further vertebra would fit in view; None keeps the full height.

    Returns
    -------
    volume : Volume
        Shape (60, 120, 220) before cropping, axes R, A, S.
    centres : ndarray, shape (n, 3)
        Blob centres, world RAS mm, cranial first.
    """
    centres = np.array([[1.3, 4.2, -30.0 - spacing_mm * i + 0.4 * i] for i in range(n)])
    volume = blob_volume(centres)
    data, affine = volume.data, volume.affine.copy()
    shape = data.shape
    if margin_mm is not None:
        lo = max(int(np.floor(centres[-1, 2] - margin_mm - affine[2, 3])), 0)
        hi = min(int(np.ceil(centres[0, 2] + margin_mm - affine[2, 3])) + 1, shape[2])
        data = np.ascontiguousarray(data[:, :, lo:hi])
        affine[2, 3] += lo
    return Volume(data, affine), centres


def blob_volume(centres: np.ndarray) -> Volume:
    """Gaussian 'bodies' (sd 12 x 5 x 5 mm) at ``centres`` (world RAS mm) in a (60, 120, 220) 1 mm RAS volume.

    The volume spans x -30..29, y -60..59, z -200..19 mm.
    """
    shape = (60, 120, 220)  # R, A, S
    affine = np.eye(4)
    affine[:3, 3] = [-30.0, -60.0, -200.0]
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1) + affine[:3, 3]
    data = np.zeros(shape, np.float32)
    for c in np.asarray(centres, float).reshape(-1, 3):
        d2 = (((grid - c) / np.array([12.0, 5.0, 5.0])) ** 2).sum(-1)
        data += np.exp(-0.5 * d2).astype(np.float32)
    data[data < 0.1] = 0.0  # blobs are most of the foreground, so normalisation keeps their peaks
    return Volume(data, affine)


def blob_labeler():
    """A ``pipeline.Labeler`` with ``BlobNet``: labels :func:`blob_spine` images (for batch-worker tests).

    Importable by name (``"spinelabel.testing.dummy:blob_labeler"``), so a
    worker process or a Dask worker can build it (``batch.LabelerSpec.factory``).
    """
    from ..pipeline import Labeler

    return Labeler(dummy_config(), BlobNet())


#: The brightest voxel of an image on which :func:`dying_labeler`'s process dies (as the kernel's out-of-memory
#: killer would end it): a mark a test can write into an otherwise ordinary :func:`blob_spine` image.
DYING_MARK = 4242.0


def dying_labeler():
    """:func:`blob_labeler`, except that the process ends at once (exit 137, no Python clean-up) on an image whose
    brightest voxel is :data:`DYING_MARK`: a worker killed on one item (``"spinelabel.testing.dummy:dying_labeler"``)."""
    import os

    labeler = blob_labeler()
    label = labeler.label

    def label_or_die(volume, *args, **kwargs):
        if float(np.max(volume.data)) == DYING_MARK:
            os._exit(137)
        return label(volume, *args, **kwargs)

    labeler.label = label_or_die  # type: ignore[method-assign]
    return labeler


def silent_model_dir(path) -> str:
    """A tiny real model directory (checksummed weights and config) whose network never fires (head bias -10)."""
    from pathlib import Path

    from ..models import save_model
    from ..models.network import UNet2D

    net = UNet2D(channels=(4, 8))
    head = net.head.state_dict()
    net.head.load_state_dict({"weight": torch.zeros_like(head["weight"]), "bias": torch.full_like(head["bias"], -10.0)})
    config = ModelConfig(
        name="silent", version="0", region="lumbar", axcodes=("R", "I", "P"), inplane_spacing_mm=2.0,
        slice_step_mm=2.0, intensity_percentiles=(1.0, 99.5), channels=(4, 8), level_offset=22.0,
        level_sd=1.0, detection=DetectionSettings(), shape_model={},
    )
    return str(save_model(Path(path), config, net))

