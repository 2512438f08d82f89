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

    from .io import load_image
    from .io.outputs import render_overlay, write_all_or_nothing, write_json
    from .pipeline import make_labeler

    data = find_shared_data()
    image = data / "lumbar-mr" / DEMO_CASE / "image.nii.gz" if data else None
    if image is not None and image.is_file():
        volume, source = load_image([image]).volume, str(image)
        yield f"example: {image} (real lumbar MR from the shared data)"
    else:
        from .synthetic import SyntheticSpec, synthesize_spine

        volume, _ = synthesize_spine(SyntheticSpec(), np.random.default_rng(0))
        source = "synthetic phantom (spinelabel.synthetic, seed 0)"
        yield "example: no shared data found; using a synthetic phantom"
    result = make_labeler("lumbar").label(volume)
    write_all_or_nothing([  # OutputError (one line) when they cannot be written
        (out / "demo.json", lambda p: write_json(result, source, p)),
        (out / "demo.png", lambda p: render_overlay(volume, result, p)),
    ])
    yield "labels: " + " ".join(f"{v.label}({v.confidence:.2f})" for v in result.vertebrae)
    for w in result.warnings:
        yield f"warning: {w.line()}"
    yield f"wrote {out / 'demo.json'} and {out / 'demo.png'}"
