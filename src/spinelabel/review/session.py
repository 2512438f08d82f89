"""The scans under review: their results, their display grids, the worklist, and saving a review.

Everything the page can reach goes through :class:`ReviewSession`, by scan
index: the page never names a file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import anatomy
from ..errors import InputError, NothingFoundError, SpinelabelError
from ..jsonfile import read_json
from ..results import LOW_CONFIDENCE
from ..warning_codes import count_at_risk, document_warnings
from .edits import UNREVIEWED, DisplayGrid, ReviewRequestError, apply_ops, result_of, review_status, with_review

if TYPE_CHECKING:
    from ..io import LoadedImage

#: Axes of the display grid: slices left to right, rows head to feet, columns front to back (as the overlay PNG).
DISPLAY_AXES = ("R", "I", "P")
#: Percentiles of the first window shown: those of the model's own intensity normalisation.
WINDOW_PERCENTILES = (1.0, 99.5)
#: Slices are sent as unsigned 16-bit samples spanning the image's value range (1/65535 of it per step).
U16_MAX = 65535
#: Images held in memory at once: a 512 x 512 x 15 series takes about 24 MB (float32 data and display copy).
MAX_CACHED_IMAGES = 4


@dataclass
class ReviewScan:
    """One scan of the worklist: where it came from, where its result lives, and the result itself."""

    name: str
    source: Path
    json_path: Path
    doc: dict[str, Any]
    series_uid: str | None = None


@dataclass(frozen=True)
class _Display:
    """A loaded image on the display grid, with its slices as uint16 samples."""

    loaded: LoadedImage
    canon_affine: np.ndarray
    pixels: np.ndarray
    value_range: tuple[float, float]
    window: tuple[float, float]


def _display(loaded: LoadedImage) -> _Display:
    """The display grid of an image: reoriented (no interpolation) and quantised for the page."""
    from ..geometry import reorient

    canon = reorient(loaded.volume, DISPLAY_AXES, copy=False)  # a view: quantised into a new array below
    data = np.nan_to_num(canon.real_data(), copy=False)
    lo, hi = float(data.min()), float(data.max())
    span = hi - lo if hi > lo else 1.0
    pixels = np.round((data - lo) * (U16_MAX / span)).astype("<u2")
    w_lo, w_hi = (float(x) for x in np.percentile(data, WINDOW_PERCENTILES))
    if w_hi <= w_lo:
        w_lo, w_hi = lo, lo + span
    return _Display(loaded, canon.affine, pixels, (lo, lo + span), ((w_lo + w_hi) / 2, w_hi - w_lo))


def _warned(label: str, warnings: Sequence[str]) -> bool:
    """Whether a warning names this label (as a word: L1 is not named by "L12")."""
    pattern = re.compile(rf"\b{re.escape(label)}\b")
    return any(pattern.search(w) for w in warnings)


def _summary(index: int, scan: ReviewScan) -> dict[str, Any]:
    """The worklist entry of one scan (``count_warned``: a warning says the count itself may be wrong)."""
    confidences = [float(v["confidence"]) for v in scan.doc["vertebrae"]]
    warnings = document_warnings(scan.doc)
    return {
        "index": index, "name": scan.name, "status": review_status(scan.doc),
        "n_labels": len(confidences), "min_confidence": min(confidences, default=0.0),
        "n_low": sum(c < LOW_CONFIDENCE for c in confidences), "n_warnings": len(warnings),
        "count_warned": count_at_risk(warnings),
    }


def _order_key(entry: dict[str, Any]) -> tuple[bool, bool, bool, float, str]:
    """Unreviewed first; among them, scans whose count is in doubt, then other warned scans, then the lowest confidence.

    A warning about the count (``no-anchor``, ``anchor-rival``, ...) is what
    precedes a whole-chain shift, the error that matters most.
    """
    return (entry["status"] != UNREVIEWED, not entry["count_warned"], entry["n_warnings"] == 0,
            entry["min_confidence"], entry["name"])


class ReviewSession:
    """The scans of one ``spinelabel review`` run and their review state (thread-safe).

    Parameters
    ----------
    scans : list of ReviewScan
    reviewer : str
        Who is reviewing: written into every review event.
    images : dict of int to LoadedImage, optional
        Images already read (while labeling), by scan index.
    """

    def __init__(self, scans: list[ReviewScan], reviewer: str, images: dict[int, LoadedImage] | None = None):
        self.scans, self.reviewer = scans, reviewer
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, _Display] = OrderedDict()
        for i, loaded in (images or {}).items():
            self._remember(i, _display(loaded))

    def _remember(self, index: int, display: _Display) -> None:
        self._cache[index] = display
        self._cache.move_to_end(index)
        while len(self._cache) > MAX_CACHED_IMAGES:
            self._cache.popitem(last=False)

    def _scan(self, index: int) -> ReviewScan:
        if not 0 <= index < len(self.scans):
            raise ReviewRequestError(f"no scan {index} (there are {len(self.scans)})")
        return self.scans[index]

    def _display_of(self, index: int) -> _Display:
        """The display of a scan, read from disk when it is not in the cache."""
        from ..io import load_image

        scan = self._scan(index)
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        display = _display(load_image([scan.source], series_uid=scan.series_uid))
        with self._lock:
            self._remember(index, display)
        return display

    def worklist(self) -> dict[str, Any]:
        """Every scan's status and flags, in review order, and the progress count."""
        with self._lock:
            entries = sorted((_summary(i, s) for i, s in enumerate(self.scans)), key=_order_key)
        return {"scans": entries, "reviewed": sum(e["status"] != UNREVIEWED for e in entries), "total": len(entries)}

    def meta(self, index: int) -> dict[str, Any]:
        """What the viewer needs for one scan: grid, spacing, window, labels on the grid, warnings."""
        display = self._display_of(index)
        with self._lock:
            doc = self.scans[index].doc
            entry = _summary(index, self.scans[index])
        shape = display.pixels.shape
        inverse = np.linalg.inv(display.canon_affine)
        warnings = document_warnings(doc)
        texts = [w.text for w in warnings]
        labels = []
        for v in doc["vertebrae"]:
            s, r, c = (float(x) for x in (inverse @ np.append(np.asarray(v["position_mm"], float), 1.0))[:3])
            conf = float(v["confidence"])
            labels.append({"label": v["label"], "slice": s, "row": r, "col": c, "confidence": conf,
                           "low": conf < LOW_CONFIDENCE, "warned": _warned(v["label"], texts)})
        spacing = np.sqrt((display.canon_affine[:3, :3] ** 2).sum(axis=0))
        middle = int(np.clip(np.round(np.median([lab["slice"] for lab in labels])), 0, shape[0] - 1)) if labels else shape[0] // 2
        return {
            **entry, "shape": list(shape), "spacing_mm": [float(x) for x in spacing], "start_slice": middle,
            "value_range": list(display.value_range), "window": list(display.window), "labels": labels,
            "warnings": [{"code": w.code, "concern": w.concern, "text": w.text} for w in warnings], "levels": sorted(anatomy.ALL_LEVELS, key=anatomy.ordinal),
            "low_confidence": LOW_CONFIDENCE, "input": str(doc.get("input", "")), "region": str(doc.get("region", "")),
            "dicom": display.loaded.kind == "dicom", "review": doc.get("review"),
        }

    def slice_bytes(self, index: int, k: int) -> bytes:
        """Slice ``k`` of a scan's display grid: rows x columns little-endian uint16, row by row."""
        pixels = self._display_of(index).pixels
        if not 0 <= k < pixels.shape[0]:
            raise ReviewRequestError(f"no slice {k} (the scan has {pixels.shape[0]})")
        return pixels[k].tobytes()

    def review(self, index: int, ops: Any) -> dict[str, Any]:
        """Apply the reviewer's operations, mark the scan reviewed and save it; returns the new meta.

        Raises
        ------
        ReviewRequestError
            An operation is invalid (nothing is saved).
        OutputError
            The result cannot be written (the previous files stay as they were).
        """
        display = self._display_of(index)
        volume = display.loaded.volume
        grid = DisplayGrid(
            to_world=lambda ijk: display.canon_affine[:3, :3] @ ijk + display.canon_affine[:3, 3],
            to_input_voxel=lambda xyz: volume.world_to_voxel(xyz), shape=display.pixels.shape,
        )
        with self._lock:
            scan = self.scans[index]
            vertebrae, changes = apply_ops(scan.doc["vertebrae"], ops, grid)
            info = display.loaded.dicom
            doc = with_review(scan.doc, vertebrae, changes, self.reviewer, str(scan.source.resolve()),
                              info.series_instance_uid if info is not None else scan.series_uid)
            _save(scan, doc, display.loaded)
            scan.doc = doc
        return self.meta(index)


def _json_bytes(doc: dict[str, Any]) -> bytes:
    """The document as ``io.outputs.write_json`` writes it (indent 1, final newline)."""
    return (json.dumps(doc, indent=1) + "\n").encode()


def _save(scan: ReviewScan, doc: dict[str, Any], loaded: LoadedImage) -> None:
    """Write the reviewed JSON and, for a DICOM input, its SR and GSPS: the DICOM objects first, the JSON last.

    The SR and GSPS are written into a temporary folder beside the JSON and
    renamed into place only when both are complete, so a failed write leaves
    the previous files untouched.
    """
    from ..io.outputs import atomic_write_bytes

    if loaded.dicom is not None:
        from ..errors import OutputError
        from ..io.dicom_label_write import write_gsps, write_sr

        result = result_of(doc)
        folder = scan.json_path.parent
        targets: dict[str, Callable[..., None]] = {  # a review confirms every name: no "?" in the GSPS
            ".sr.dcm": write_sr, ".gsps.dcm": functools.partial(write_gsps, confirmed=True),
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder, prefix=".spinelabel-review-") as tmp:
                for suffix, write in targets.items():
                    write(result, loaded.dicom, Path(tmp) / f"out{suffix}")
                for suffix in targets:
                    os.replace(Path(tmp) / f"out{suffix}", folder / f"{scan.name}{suffix}")
        except OSError as exc:
            raise OutputError(f"cannot write the SR/GSPS of {scan.name} in {folder}: {exc.strerror or exc}") from None
    atomic_write_bytes(scan.json_path, _json_bytes(doc))


def _check_doc(doc: Any, path: Path) -> dict[str, Any]:
    """A result document read from ``path``, checked to be a schema-v1 spinelabel result."""
    if not isinstance(doc, dict) or doc.get("schema_version") != 1 or not isinstance(doc.get("vertebrae"), list):
        raise InputError(f"{path}: not a spinelabel result (schema_version 1 with a \"vertebrae\" list)")
    for n, v in enumerate(doc["vertebrae"], start=1):
        ok = isinstance(v, dict) and v.get("label") in anatomy.VERSE_ID and all(
            isinstance(v.get(k), list) and len(v[k]) == 3 for k in ("position_mm", "voxel"))
        if not ok or not isinstance(v.get("confidence"), (int, float)):
            raise InputError(f"{path}: vertebra #{n} needs a known label, position_mm, voxel and confidence")
    try:
        document_warnings(doc)
    except ValueError as exc:
        raise InputError(f"{path}: its warning_codes do not fit its warnings ({exc})") from None
    return doc


def load_result_doc(path: Path) -> dict[str, Any]:
    """Read an existing result JSON (``spinelabel label`` or a saved review).

    Raises
    ------
    InputError
        Unreadable, not JSON, or not a schema-v1 result.
    """
    return _check_doc(read_json(path), path)


def _unlabeled_doc(source: str, message: str) -> dict[str, Any]:
    """The document of a scan in which the model found nothing: no labels, the reason as a warning."""
    return {"schema_version": 1, "input": source, "region": "", "model": {"name": "", "version": ""},
            "vertebrae": [], "warnings": [f"labeling found nothing: {message}"], "warning_codes": ["nothing-labeled"]}


def _new_scan(
    name: str, source: Path, json_path: Path, series: str | None, labeler: Callable[[], Any]
) -> tuple[ReviewScan, LoadedImage]:
    """Label one input (writing its result JSON) and return its scan and image."""
    from ..io import load_image
    from ..io.outputs import result_to_dict, write_json
    from ..pipeline import label_loaded

    loaded = load_image([source], series_uid=series)
    try:
        result = label_loaded(labeler(), loaded)
    except NothingFoundError as exc:
        return ReviewScan(name, source, json_path, _unlabeled_doc(loaded.source, str(exc)), series), loaded
    write_json(result, loaded.source, json_path)
    return ReviewScan(name, source, json_path, result_to_dict(result, loaded.source), series), loaded


def prepare_scans(
    inputs: Sequence[Path], names: Sequence[str], labels_dir: Path, labeler: Callable[[], Any], series: str | None = None,
) -> tuple[list[ReviewScan], dict[int, LoadedImage], list[tuple[Path, str]]]:
    """The scans to review: ``labels_dir/NAME.json`` where it exists, else a new labeling written there.

    Parameters
    ----------
    inputs, names : sequences of the same length
        One image (NIfTI file or DICOM folder) per scan, and its unique name.
    labeler : callable
        Returns the labeler (``pipeline.make_labeler``); called only when an
        input has no result yet, so a fully labeled folder loads no model.

    Returns
    -------
    scans, images, failures
        The usable scans; the images read while labeling (by scan index);
        ``(input, message)`` for each input that could not be used.
    """
    scans: list[ReviewScan] = []
    images: dict[int, LoadedImage] = {}
    failures: list[tuple[Path, str]] = []
    labeler = functools.lru_cache(maxsize=1)(labeler)  # the model is loaded once, on first need
    for source, name in zip(inputs, names):
        json_path = labels_dir / f"{name}.json"
        try:
            if json_path.exists():
                scans.append(ReviewScan(name, Path(source), json_path, load_result_doc(json_path), series))
                continue
            scan, loaded = _new_scan(name, Path(source), json_path, series, labeler)
        except SpinelabelError as exc:
            failures.append((Path(source), str(exc)))
            continue
        if len(images) < MAX_CACHED_IMAGES:  # the rest are read again when opened
            images[len(scans)] = loaded
        scans.append(scan)
    return scans, images, failures


__all__ = ["ReviewScan", "ReviewSession", "load_result_doc", "prepare_scans"]
