"""``spinelabel demo``: label a built-in example and write its JSON and overlay.

The example is the first validation scan of the shared lumbar data when it can
be found (``$SPINELABEL_DATA`` or ``../shared/data`` beside the working
directory or the source checkout); otherwise a synthetic phantom that the
package generates itself, which is clearly reported as such.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

DEMO_CASE = "zukic-06"


def find_shared_data() -> Path | None:
    """The shared data folder (holding lumbar-mr/), if present."""
    candidates = []
    if os.environ.get("SPINELABEL_DATA"):
        candidates.append(Path(os.environ["SPINELABEL_DATA"]))
    candidates.append(Path.cwd().parent / "shared" / "data")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for c in candidates:
        if (c / "lumbar-mr").is_dir():
            return c
    return None


def run_demo(out: Path) -> Iterator[str]:
    """Label the example; yields lines to print."""
    import numpy as np

    from .io import LoadedImage, load_image
    from .pipeline import label_loaded_to_files, make_labeler

    data = find_shared_data()
    image = data / "lumbar-mr" / DEMO_CASE / "image.nii.gz" if data else None
    if image is not None and image.is_file():
        loaded = load_image([image])
        yield f"example: {image} (real lumbar MR from the shared data)"
    else:
        from .synthetic import SyntheticSpec, synthesize_spine

        volume, _ = synthesize_spine(SyntheticSpec(), np.random.default_rng(0))
        loaded = LoadedImage(volume, "synthetic phantom (spinelabel.synthetic, seed 0)", "nifti", None)
        yield "example: no shared data found; using a synthetic phantom"
    # the one label-and-write path (OutputError, one line, when the outputs cannot be written)
    result = label_loaded_to_files(make_labeler("lumbar"), loaded, out / "demo.json", out / "demo.png")
    yield "labels: " + " ".join(f"{v.label}({v.confidence:.2f})" for v in result.vertebrae)
    for w in result.warnings:
        yield f"warning: {w.line()}"
    yield f"wrote {out / 'demo.json'} and {out / 'demo.png'}"
