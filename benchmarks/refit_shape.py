"""Refit the labeling shape model of a model directory on its own training scans' annotations.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.refit_shape MODEL_DIR [--out DIR] [--labels FILE ...]

The shape model (``config.json`` -> ``shape_model``) is fitted from the
annotations of the scans the network was trained on (``training.scans`` of
the config) when a model is trained. When the shape model learns something
new (the sagittal step directions, twelfth session) the models trained before
get it here, with their weights untouched: the shared lumbar scans'
``centroids.json`` plus ``--labels`` files (our S1 points, the cervical annotations), merged by
scan id and restricted to the training scans. The learned spacings must come
out as before (the same points); a difference is reported and nothing is
written (``--directions-only`` keeps the model's spacings and adds the
directions, for a model whose training points cannot be rebuilt exactly: the
shipped cervical model's three thoracic spacings of the real subjects).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks.lumbar import SHARED

def training_points(scans: list[str], labels: list[Path]) -> dict[str, dict[str, np.ndarray]]:
    """Level -> RAS mm point of each training scan, from the shared lumbar scans and ``labels``; first point of a level wins."""
    from spinelabel.annotations import load_annotations

    files = [f for f in sorted(SHARED.glob("*/centroids.json")) if f.parent.name in scans]
    points: dict[str, dict[str, np.ndarray]] = {}
    for ann in [*load_annotations(files), *load_annotations(labels)]:
        if ann.scan_id in scans:
            for level, p in ann.points.items():
                points.setdefault(ann.scan_id, {}).setdefault(level, np.asarray(p, float))
    return points


def main(argv: list[str] | None = None) -> int:
    from spinelabel.shape_model import fit_shape_model
    from spinelabel.training.train import SPACING_SD_FLOOR_MM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, help="write a copy here (default: rewrite the model's config.json)")
    ap.add_argument("--labels", type=Path, nargs="*", default=[], help="extra annotation files (CSV), merged by scan id")
    ap.add_argument("--directions-only", action="store_true",
                    help="keep the model's spacings, add the directions (where its training points cannot be rebuilt exactly)")
    args = ap.parse_args(argv)

    from spinelabel.errors import InputError
    from spinelabel.jsonfile import read_json

    try:
        config = read_json(args.model / "config.json")
        scans = list(config["training"]["scans"])
        points = training_points(scans, args.labels)
    except InputError as exc:
        print(f"refit_shape: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError):
        print(f"refit_shape: {args.model / 'config.json'}: no training scans recorded", file=sys.stderr)
        return 1
    missing = sorted(set(scans) - set(points))
    if missing:
        print(f"refit_shape: no annotations for {', '.join(missing)}", file=sys.stderr)
        return 1
    shape = fit_shape_model(list(points.values()), min_sd_mm=SPACING_SD_FLOOR_MM).to_dict()
    before = config["shape_model"].get("spacing", {})
    changed = [k for k in set(before) | set(shape["spacing"])
               if not np.allclose(before.get(k, [np.nan] * 2), shape["spacing"].get(k, [np.inf] * 2))]
    if changed and not args.directions_only:
        print(f"refit_shape: spacings differ from the model's ({', '.join(sorted(changed))}): other points?", file=sys.stderr)
        return 1
    config["shape_model"] = {**shape, "spacing": before} if args.directions_only else shape
    out = args.out or args.model
    from spinelabel.errors import OutputError
    from spinelabel.io.outputs import atomic_write_bytes

    try:
        if out != args.model:
            out.mkdir(parents=True, exist_ok=True)
            for f in args.model.iterdir():
                if f.name != "config.json" and f.is_file():
                    shutil.copy2(f, out / f.name)
        # all of it or none: the old config stays on a failed write
        atomic_write_bytes(out / "config.json", (json.dumps(config, indent=1) + "\n").encode())
    except OutputError as exc:
        print(f"refit_shape: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"refit_shape: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    learned = ", ".join(f"{k} {m:+.1f}±{s:.1f}" for k, (m, s) in sorted(shape.get("direction", {}).items()))
    print(f"{out}: {len(points)} scans; directions learned: {learned or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

