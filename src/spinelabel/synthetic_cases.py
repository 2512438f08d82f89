"""Write synthetic annotated scans to disk, in the layout of an annotated archive.

Each case is a folder ``<prefix>-NNNN/`` with ``image.nii.gz`` and a
``centroids.json`` (the form :func:`spinelabel.annotations.load_annotations`
reads), so phantoms go through exactly the path a hospital's own annotated
scans take: ``spinelabel train``, ``spinelabel label``, ``spinelabel evaluate``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import anatomy
from .annotations import CENTROIDS_NAME, IMAGE_NAME

if TYPE_CHECKING:
    from .geometry import Volume
    from .synthetic import SyntheticSpec

__all__ = ["write_synthetic_cases"]


def write_synthetic_cases(
    out_dir: str | Path,
    n: int,
    region: str,
    seed: int = 0,
    prefix: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Synthesise ``n`` random scans of ``region`` and write them as case folders.

    Parameters
    ----------
    out_dir : path
        Created if missing; existing cases with the same names are overwritten.
    n : int
    region : {"lumbar", "cervical", "whole"}
        Field of view (see :func:`spinelabel.synthetic.random_spec`).
    seed : int
        Case ``i`` depends only on ``seed`` and ``i``.
    prefix : str, optional
        Case-name prefix (default ``synth-<region>``).

    Returns
    -------
    list of Path
        The case folders, in order.

    Raises
    ------
    OutputError
        A case folder or one of its files is taken by something else (a file where the folder goes, a folder
        where a file goes), checked for every case before any is written; or a write fails (the cases written
        before it are kept, each whole).
    """
    from .io.nifti import save_nifti
    from .io.outputs import atomic_write_bytes, write_all_or_nothing
    from .synthetic import random_spec, synthesize_spine

    if region not in anatomy.REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {tuple(anatomy.REGIONS)}")
    out = Path(out_dir)
    prefix = prefix or f"synth-{region}"
    folders = [out / f"{prefix}-{i:04d}" for i in range(n)]
    _check_case_targets(folders)
    cases = []
    for i, case in enumerate(folders):
        rng = np.random.default_rng([seed, i])
        spec = random_spec(rng, region)
        volume, points = synthesize_spine(spec, rng)
        payload = json.dumps(_centroids_doc(case.name, spec, volume, points), indent=1).encode()
        write_all_or_nothing([  # a case folder holds both files or neither
            (case / IMAGE_NAME, lambda p: save_nifti(volume, p)),
            (case / CENTROIDS_NAME, lambda p: atomic_write_bytes(p, payload)),
        ])
        cases.append(case)
        if progress is not None:
            progress(i)
    return cases


def _check_case_targets(folders: list[Path]) -> None:
    """OutputError for the first case folder, or file in one, taken by something else (checked before any is drawn)."""
    from .io.outputs import check_targets, check_writable_folder

    for folder in folders:
        check_writable_folder(folder)  # a file where the folder goes
        check_targets([folder / IMAGE_NAME, folder / CENTROIDS_NAME])


def _centroids_doc(name: str, spec: SyntheticSpec, volume: Volume, points: dict[str, np.ndarray]) -> dict[str, Any]:
    """The ``centroids.json`` of one case: its exact labels in voxels and world mm, and the phantom's spec."""
    vox = volume.world_to_voxel(np.array([points[lv] for lv in points]))
    return {
        "case": name,
        "source": "spinelabel.synthetic",
        "spec": {"contrast": spec.contrast, "axcodes": spec.axcodes, "spacing": list(spec.spacing)},
        "vertebrae": [
            {"label": lv, "verse_id": anatomy.VERSE_ID[lv], "voxel": [round(float(c), 3) for c in v],
             "world_mm": [round(float(c), 3) for c in points[lv]]}
            for lv, v in zip(points, vox)
        ],
    }
