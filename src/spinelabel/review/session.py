"""The scans under review: their results, their display grids, the worklist, and saving a review.

Everything the page can reach goes through :class:`ReviewSession`, by scan
index: the page never names a file.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import anatomy
from ..errors import InputError, NothingFoundError, SpinelabelError
from ..preprocessing import INTENSITY_PERCENTILES
from ..results import LOW_CONFIDENCE
from ..warning_codes import count_at_risk, document_warnings
from .documents import check_matches_image, check_matches_source, digest, parse_result, read_result
from .edits import (
    UNREVIEWED, DisplayGrid, ReviewOrderError, ReviewRequestError, apply_ops, check_order, review_status, with_review,
)
from .saving import save_review

if TYPE_CHECKING:
    from ..io import LoadedImage

#: Axes of the display grid: slices left to right, rows head to feet, columns front to back (as the overlay PNG).
DISPLAY_AXES = ("R", "I", "P")
#: Percentiles of the first window shown: those of the model's own intensity normalisation.
WINDOW_PERCENTILES = INTENSITY_PERCENTILES
#: Slices are sent as unsigned 16-bit samples spanning the image's value range (1/65535 of it per step).
U16_MAX = 65535
#: Images held in memory at once: a 512 x 512 x 15 series takes about 24 MB (float32 data and display copy).
MAX_CACHED_IMAGES = 4


@dataclass
class ReviewScan:
    """One scan of the worklist: where it came from, where its result lives, and the result itself.

    ``digest`` is that of the JSON's bytes when the session last read or
    wrote it (None: there was no file), so that a save notices a file changed
    by someone else meanwhile.
    """

    name: str
    source: Path
    json_path: Path
    doc: dict[str, Any]
    series_uid: str | None = None
    digest: str | None = None


#: ``review``'s ``version`` when the request gave none (null is a version: that of a scan with no result file yet).
NO_VERSION: Any = object()


class ReviewConflictError(SpinelabelError):
    """The result file changed on disk since the session read it (another review session?): nothing was saved."""


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
        self._lock = threading.Lock()  # one save at a time, and none after close()
        self._closed = False
        self._cache: OrderedDict[int, _Display] = OrderedDict()
        for i, loaded in (images or {}).items():
            self._remember(i, _display(loaded))

    def close(self) -> None:
        """Wait for a save in progress to finish, and refuse any later one (the server is stopping).

        A save's files are renamed into place one after the other; a process
        that exits in between (Ctrl+C on a slow share) leaves an SR that
        disagrees with its JSON.
        """
        with self._lock:
            self._closed = True

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
            scan = self.scans[index]
            doc = scan.doc
            entry = _summary(index, scan)
        check_matches_image(doc, scan.json_path, display.loaded)  # a result of another scan is not shown
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
            "dicom": display.loaded.kind == "dicom", "review": doc.get("review"), "version": scan.digest,
        }

    def slice_bytes(self, index: int, k: int) -> bytes:
        """Slice ``k`` of a scan's display grid: rows x columns little-endian uint16, row by row."""
        pixels = self._display_of(index).pixels
        if not 0 <= k < pixels.shape[0]:
            raise ReviewRequestError(f"no slice {k} (the scan has {pixels.shape[0]})")
        return pixels[k].tobytes()

    def review(self, index: int, ops: Any, version: Any = NO_VERSION, keep_order: Any = False) -> dict[str, Any]:
        """Apply the reviewer's operations, mark the scan reviewed and save it; returns the new meta.

        ``version``: the meta's ``version`` the operations were made on (the
        page sends it; null for a scan with no result file yet);
        :data:`NO_VERSION` skips that check (an API client without it).
        ``keep_order``: true saves names out of head-to-foot order (the
        reviewer confirmed them: a severe deformity).

        Raises
        ------
        ReviewOrderError
            The names are out of order and ``keep_order`` is false: nothing is saved.
        ReviewRequestError
            An operation is invalid, or a DICOM scan's review keeps no
            vertebra (its SR cannot be empty): nothing is saved.
        ReviewConflictError
            The JSON changed on disk since it was read, or was saved since the
            page showed ``version`` (another tab or reviewer): nothing is saved;
            the session takes the version on disk when it fits the image.
        InputError
            The result is not one of this image (nothing is saved).
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
            if self._closed:
                raise ReviewRequestError("the review server is stopping: nothing saved")
            scan = self.scans[index]
            _check_unchanged(scan, display.loaded)
            if version is not NO_VERSION:
                _check_version(version, scan)
            check_matches_image(scan.doc, scan.json_path, display.loaded)
            vertebrae, changes = apply_ops(scan.doc["vertebrae"], ops, grid)
            if not isinstance(keep_order, bool):
                raise ReviewRequestError(f"keep_order must be true or false, not {type(keep_order).__name__}")
            order_confirmed = _order_confirmed(vertebrae, keep_order)
            if not vertebrae and display.loaded.kind == "dicom":
                raise ReviewRequestError("a DICOM scan's review must keep at least one vertebra: its SR and GSPS "
                                         "cannot be empty (nothing saved)")
            info = display.loaded.dicom
            doc = with_review(scan.doc, vertebrae, changes, self.reviewer, str(scan.source.resolve()),
                              info.series_instance_uid if info is not None else scan.series_uid,
                              order_confirmed=order_confirmed)
            scan.digest = save_review(scan.json_path, scan.name, doc, display.loaded)
            scan.doc = doc
        return self.meta(index)


def _order_confirmed(vertebrae: list[dict[str, Any]], keep_order: bool) -> bool:
    """Whether names out of head-to-foot order are saved because the reviewer confirmed them; ReviewOrderError
    (:func:`edits.check_order`) when they are out of order and not confirmed."""
    try:
        check_order(vertebrae)
    except ReviewOrderError:
        if not keep_order:
            raise
        return True
    return False


def _check_version(version: Any, scan: ReviewScan) -> None:
    """Refuse a save made on another version of the result than the session holds (another tab or reviewer saved)."""
    if not isinstance(version, (str, type(None))):
        raise ReviewRequestError(f"version must be the text the page was given, not {type(version).__name__}")
    if version != scan.digest:
        raise ReviewConflictError(f"{scan.json_path.name} was saved since this page showed it (another tab or "
                                  "reviewer?): nothing saved; reload the page to see that version")


def _check_unchanged(scan: ReviewScan, loaded: LoadedImage) -> None:
    """Refuse a save over a JSON that changed on disk since the session read or wrote it; take that version in.

    A file removed meanwhile is no conflict: the save writes it afresh.

    Raises
    ------
    ReviewConflictError
        The file changed; when the version on disk is a result of this image,
        the session now holds it (a reload of the page shows it).
    """
    try:
        payload = scan.json_path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ReviewConflictError(f"{scan.json_path}: cannot read it to check it is unchanged "
                                  f"({exc.strerror or exc}); not saved") from None
    if digest(payload) == scan.digest:
        return
    name = scan.json_path.name
    try:
        doc = parse_result(payload, scan.json_path)
        check_matches_image(doc, scan.json_path, loaded)
    except InputError as exc:
        raise ReviewConflictError(f"{name} was changed on disk since this page loaded it and cannot be used now "
                                  f"({exc}); not saved: mend or remove that file") from None
    scan.doc, scan.digest = doc, digest(payload)
    raise ReviewConflictError(f"{name} was changed on disk since this page loaded it (another review session?); "
                              "reload the page to see the saved version")


def load_result_doc(path: Path) -> dict[str, Any]:
    """Read an existing result JSON (``spinelabel label`` or a saved review), checked (``documents.check_result_doc``).

    Raises
    ------
    InputError
        Unreadable, not JSON, or not a usable schema-v1 result.
    """
    return read_result(path)[0]


def _unlabeled_doc(source: str, message: str) -> dict[str, Any]:
    """The document of a scan in which the model found nothing: no labels, the reason as a warning."""
    return {"schema_version": 1, "input": source, "region": "", "model": {"name": "", "version": "", "sha256": ""},
            "vertebrae": [], "warnings": [f"labeling found nothing: {message}"], "warning_codes": ["nothing-labeled"]}


def _new_scan(
    name: str, source: Path, json_path: Path, series: str | None, labeler: Callable[[], Any]
) -> tuple[ReviewScan, LoadedImage]:
    """Label one input, writing its result JSON by ``pipeline.label_loaded_to_files`` (the one read-label-write
    path: its output checks, and a review saved there meanwhile is not replaced), and return its scan and image."""
    from ..io import load_image
    from ..pipeline import label_loaded_to_files

    loaded = load_image([source], series_uid=series)
    try:
        label_loaded_to_files(labeler(), loaded, json=json_path)
    except NothingFoundError as exc:
        return ReviewScan(name, source, json_path, _unlabeled_doc(loaded.source, str(exc)), series), loaded
    doc, read_digest = read_result(json_path)
    return ReviewScan(name, source, json_path, doc, series, read_digest), loaded


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
                doc, read = read_result(json_path)
                check_matches_source(doc, json_path, Path(source), series)
                scans.append(ReviewScan(name, Path(source), json_path, doc, series, read))
                continue
            scan, loaded = _new_scan(name, Path(source), json_path, series, labeler)
        except SpinelabelError as exc:
            failures.append((Path(source), str(exc)))
            continue
        if len(images) < MAX_CACHED_IMAGES:  # the rest are read again when opened
            images[len(scans)] = loaded
        scans.append(scan)
    return scans, images, failures


__all__ = ["ReviewConflictError", "ReviewScan", "ReviewSession", "load_result_doc", "prepare_scans"]
