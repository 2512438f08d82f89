"""Writing results: the JSON document (schema v1), the overlay picture and the NIfTI label map."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import __version__, anatomy
from ..errors import OutputError
from ..jsonfile import parse_json
from ..geometry import Volume, reorient
from ..results import LOW_CONFIDENCE, LabelResult
from ..warning_codes import CHECK_THE_COUNT, codes, count_at_risk, texts
from .nifti import NIFTI_SUFFIXES

SCHEMA_VERSION = 1


#: Permissions of a written output before the umask: what ``open()`` would give.
OUTPUT_MODE = 0o666


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through :func:`atomic_write`: never a half-written file.

    Raises
    ------
    OutputError
        As :func:`atomic_write`.
    """
    atomic_write(path, lambda f: f.write(payload))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then rename it: never a half-written file.

    The file gets the permissions a plain ``open()`` would give (0666 less the
    umask), not the 0600 of a temporary file. Whatever goes wrong, the
    temporary file is removed.

    Parameters
    ----------
    path : str or Path
        The file to write (replaced when it exists).
    write : callable
        Writes the contents into the binary file object it is given (which it
        must not close).

    Raises
    ------
    OutputError
        The folder cannot be created or written, the disk is full, or the name
        is taken by a folder or a device; also an ``OSError`` of ``write``.
    """
    path = Path(path)
    check_output_target(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".spinelabel-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, OUTPUT_MODE & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {_reason(path, exc)}") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _reason(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot be written: a file standing where a folder of its path should be, else the OS's words."""
    for parent in path.parents:
        try:
            mode = os.stat(parent).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            return f"{parent} is a file, not a folder"
        break
    return str(exc.strerror or exc)


def _mode(path: Path, failure: str) -> int | None:
    """The ``stat`` mode of ``path`` (links followed), None when nothing is there.

    Raises
    ------
    OutputError
        ``failure: reason`` when the system refuses the name itself (too
        long, no permission to look).
    """
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise OutputError(f"{failure}: {exc.strerror or exc}") from None


def check_writable_folder(folder: Path) -> None:
    """Refuse an output folder that could not be created or written, without creating anything.

    Run before long work (a batch, a training), so that a folder that cannot
    be written is one message at the start, not a failure after the work.

    Raises
    ------
    OutputError
        ``folder``, or the nearest of its parents that exists, is a file or
        cannot be written (read-only, no permission).
    """
    for existing in (folder, *folder.parents):
        mode = _mode(existing, f"cannot write into {folder}")
        if mode is not None:
            break
    if mode is None or not stat.S_ISDIR(mode):
        raise OutputError(f"cannot write into {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_file_system(existing) else "permission denied"
        raise OutputError(f"cannot write into {folder}: {existing} is not writable ({reason})")


def _read_only_file_system(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def check_output_target(path: Path) -> None:
    """Refuse a name that is empty, hidden by accident, or taken by anything but a regular file."""
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"not a file name: {str(path)!r} (an empty name, or a folder such as '.')")
    mode = _mode(path, f"cannot write {path}")
    if mode is not None and not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device or a pipe?)"
        raise OutputError(f"cannot write {path}: it is {what}")


#: Prefix of the hidden folder in which a set of outputs is staged beside its targets: hidden, so that no reader
#: of the folder takes its files for results. An interrupted run may leave one behind (harmless, removable).
STAGING_PREFIX = ".spinelabel-"


def check_targets(targets: Sequence[Path], inputs: Sequence[Path] = ()) -> list[Path]:
    """The targets of a set of outputs as paths; OutputError for a name given twice, one of the ``inputs`` (the
    files read: an image, annotations), an empty name, or a name taken by a folder or a device."""
    paths = [Path(p) for p in targets]
    resolved = [p.resolve() for p in paths]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise OutputError(f"{paths[i]} is given for two outputs of the same scan")
    read = {Path(p).resolve() for p in inputs}
    for p, r in zip(paths, resolved):
        if r in read:
            raise OutputError(f"{p} is an input of this run (a file it reads): not overwritten with an output")
    for p in paths:
        check_output_target(p)
    return paths


def _staging_folder(stack: contextlib.ExitStack, folder: Path, target: Path) -> Path:
    """A new hidden folder inside ``folder`` (created with its parents), removed when ``stack`` closes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.TemporaryDirectory(dir=folder, prefix=STAGING_PREFIX, ignore_cleanup_errors=True)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_reason(target, exc)}") from None
    staging = Path(stack.enter_context(tmp))
    (staging / "new").mkdir()
    (staging / "old").mkdir()
    return staging


def _keep_aside(target: Path, backup: Path) -> None:
    """Keep the file at ``target`` as ``backup`` without moving it: a hard link, or a copy where links fail."""
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(target, backup, follow_symlinks=False)


def _replace_all(staged: Sequence[tuple[Path, Path, Path]]) -> None:
    """Rename each staged file onto its target, in order; on a failure put back every target replaced so far.

    ``staged``: (new file, target, staging folder) triples.

    Raises
    ------
    OutputError
        A previous file cannot be kept aside, or a new one not renamed into place.
    """
    backups: dict[Path, Path] = {}
    done: list[tuple[Path, Path]] = []
    target = staged[0][1]
    try:
        for _, target, staging in staged:
            if os.path.lexists(target):
                backups[target] = staging / "old" / f".{target.name}"
                _keep_aside(target, backups[target])
        for new, target, _ in staged:
            done.append((new, target))  # before the rename: an interrupt right after it still puts the file back
            os.replace(new, target)
    except BaseException as exc:
        lost = _restore(done, backups)
        if not isinstance(exc, OSError):
            raise
        also = f"; and {', '.join(lost)} could not be put back: the outputs disagree now" if lost else ""
        raise OutputError(f"cannot write {target}: {_reason(target, exc)}; no output of the set written{also}") from None


def _restore(done: Sequence[tuple[Path, Path]], backups: dict[Path, Path]) -> list[str]:
    """Put back the previous files of the ``(new, target)`` pairs renamed (remove the new ones that had none);
    the names that could not be. A pair whose new file is still staged was never renamed: nothing to undo."""
    lost = []
    for new, target in reversed(done):
        if os.path.lexists(new):
            continue
        try:
            if target in backups:
                os.replace(backups[target], target)
            else:
                target.unlink()
        except OSError:
            lost.append(str(target))
    return lost


class _DeferredSignals:
    """Ctrl+C and SIGTERM held back from :meth:`start` to the end of the ``with`` block, then delivered.

    A signal whose handler raised inside ``shutil.rmtree`` (the staging
    folder's removal) surfaced as an unrelated ``OSError`` (a traceback and
    exit status 1, not 143), and one between two renames sets the outputs
    back while the user waits. Python runs signal handlers in the main thread
    only, so the handlers are swapped there (elsewhere nothing is deferred).
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._pending: list[int] = []

    def __enter__(self) -> _DeferredSignals:
        return self

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, lambda signum, _frame: self._pending.append(signum))

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: set from C, not Python
        for number in dict.fromkeys(self._pending):
            signal.raise_signal(number)  # now handled as it would have been


def write_all_or_nothing(
    writers: Sequence[tuple[Path, Callable[[Path], None]]],
    inputs: Sequence[Path] = (),
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Write a set of outputs together: all of them, or none, and the earlier files kept when it fails.

    Each ``(path, write)``: ``write(p)`` fills one file at ``p`` (a name that
    ends as ``path``'s does, so the format follows the suffix). The targets are
    checked first (no name twice, none a folder or a device, none one of the
    ``inputs``, the files the scan was read from). Every file is then written,
    under a hidden name, into a hidden folder beside its target
    (``STAGING_PREFIX``), where no reader of results or annotations looks; only when all
    are written are they renamed onto their targets, in the order given. When
    a write fails, no target has been touched; when a rename fails, the targets
    already replaced are put back as they were (an earlier run's outputs) and
    the new ones that had no earlier file removed. ``before_replace`` runs
    after the last write, just before the first rename: a check of the
    targets that may have changed while the outputs were made (raising leaves
    every target as it was).

    Raises
    ------
    OutputError
        One line, naming the target (not the staged file).
    """
    paths = check_targets([p for p, _ in writers], inputs)
    deferred = _DeferredSignals()
    with deferred, contextlib.ExitStack() as stack:  # the signals come back after the staging folders are removed
        staging: dict[Path, Path] = {}
        staged: list[tuple[Path, Path, Path]] = []
        for path, (_, write) in zip(paths, writers):
            folder = path.parent
            if folder not in staging:
                staging[folder] = _staging_folder(stack, folder, path)
            new = staging[folder] / "new" / f".{path.name}"  # hidden, ending as the target: a reader skips it
            try:
                write(new)
            except OutputError as exc:
                raise OutputError(str(exc).replace(str(new), str(path))) from None
            staged.append((new, path, staging[folder]))
        deferred.start()  # from the last check to the end: renames and clean-up are not cut in the middle
        if before_replace is not None:
            before_replace()
        if staged:
            _replace_all(staged)


#: The file name endings of each output, by its option: a name that ends otherwise would hold a format other
#: tools take for another (JSON text in ``r.nii.gz``, PNG bytes in ``o.tif``).
OUTPUT_SUFFIXES = {
    "result": (".json",),
    "overlay": (".png", ".jpg", ".jpeg"),
    "label map": NIFTI_SUFFIXES,
}
#: A file larger than this is not read to see whether it holds a review (a result is a few kB).
MAX_RESULT_BYTES = 1 << 20


def check_output_names(json: Path | None = None, overlay: Path | None = None, label_map: Path | None = None) -> None:
    """Refuse an output whose name ends unlike its format, or a result file that holds a person's review.

    Run after :func:`check_targets`, which refuses empty names and names the system will not look at.

    Raises
    ------
    OutputError
        ``json``, ``overlay`` or ``label_map`` does not end as
        :data:`OUTPUT_SUFFIXES` says; or ``json`` holds a reviewed result
        (its ``review`` record): that is a person's work and training data for
        ``spinelabel train``, not a run's output to replace.
    """
    for what, path in (("result", json), ("overlay", overlay), ("label map", label_map)):
        if path is not None and not Path(path).name.lower().endswith(OUTPUT_SUFFIXES[what]):
            endings = " or ".join(OUTPUT_SUFFIXES[what])
            raise OutputError(f"the {what}'s name must end in {endings}: {path}")
    status = reviewed_status(Path(json)) if json is not None else None
    if status is not None:
        raise OutputError(f"{json} holds a reviewed result (review status {status!r}): not replaced; "
                          "name another output, or move the review away first")


def check_scan_outputs(
    json: Path | None = None, overlay: Path | None = None, sr: Path | None = None, gsps: Path | None = None,
    label_map: Path | None = None, inputs: Sequence[Path] = (),
) -> None:
    """Every check of one scan's outputs (None: not written) before any work: :func:`check_targets` (``inputs``:
    the files the scan is read from), :func:`check_output_names`, then :func:`check_writable_folder` of each
    output's folder. OutputError for the first that fails."""
    targets = check_targets([p for p in (json, overlay, sr, gsps, label_map) if p is not None], inputs)
    check_output_names(json, overlay, label_map)
    for folder in dict.fromkeys(p.parent for p in targets):  # a read-only folder: now, not after the labeling
        check_writable_folder(folder)


def existing_result(path: Path, max_bytes: int = MAX_RESULT_BYTES) -> dict[str, Any] | None:
    """The JSON object in ``path`` when it may be a document of ours (a file of at most ``max_bytes``); None when
    it is missing, unreadable, larger, or holds no JSON object."""
    try:
        if os.path.getsize(path) > max_bytes:
            return None
        doc = parse_json(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def reviewed_status(path: Path) -> str | None:
    """The review status recorded in the result file ``path`` ("accepted", "corrected"); None when it holds
    none (or is missing, unreadable, or not a result)."""
    doc = existing_result(path)
    review = doc.get("review") if doc is not None else None
    return str(review.get("status", "reviewed")) if isinstance(review, dict) else None


def result_to_dict(result: LabelResult, input_description: str) -> dict[str, Any]:
    """The stable output document (see docs/output-format.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "input": input_description,
        "region": result.region,
        "model": {"name": result.model_name, "version": result.model_version, "sha256": result.model_sha256},
        "software": {"name": "spinelabel", "version": __version__},
        "vertebrae": [
            {
                "label": v.label,
                "verse_id": anatomy.VERSE_ID[v.label],
                "position_mm": [round(float(x), 2) for x in v.position_mm],
                "voxel": [round(float(x), 2) for x in v.voxel],
                "confidence": round(float(v.confidence), 3),
            }
            for v in result.vertebrae
        ],
        "warnings": texts(result.warnings),
        "warning_codes": codes(result.warnings),
        **({"checks": {"upside_down": result.upside_down_check}} if result.upside_down_check else {}),
    }


def json_bytes(doc: dict[str, Any]) -> bytes:
    """A result document as its file holds it (indent 1, final newline): what :func:`write_json` and a saved review
    write.

    Raises
    ------
    OutputError
        A value is NaN or infinite: no JSON reader takes it back.
    """
    try:
        return (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    except ValueError:
        raise OutputError("the result holds a value that is no finite number (NaN or infinity): not written") from None


def write_json(result: LabelResult, input_description: str, path: str | Path) -> None:
    """The result document (:func:`result_to_dict`) as JSON at ``path`` (:func:`json_bytes`), written whole or not
    at all; OutputError when it holds a value that is no number or cannot be written."""
    atomic_write_bytes(path, json_bytes(result_to_dict(result, input_description)))


def label_map(result: LabelResult, volume: Volume) -> Volume:
    """The labels as a point-label image on the input's grid: each vertebra's VerSe number at its centre voxel.

    The form of a "labels" file of the Spinal Cord Toolbox or a VerSe
    centroid mask: one voxel per vertebra, valued by ``anatomy.VERSE_ID``
    (C1 = 1 ... L5 = 24, L6 = 25, S1 = 26, T13 = 28), 0 elsewhere.

    Parameters
    ----------
    result : LabelResult
        Its ``Vertebra.voxel`` indices refer to ``volume``.
    volume : Volume
        The labeled image; the map takes its shape and affine.

    Returns
    -------
    Volume
        uint8 data of ``volume``'s shape (I, J, K), ``volume``'s affine; each
        centre rounded to the nearest voxel (clipped into the grid: a centre
        less than half a voxel outside, on a body cut by the image edge).
    """
    data = np.zeros(volume.shape, np.uint8)
    for v in result.vertebrae:
        ijk = np.clip(np.rint(np.asarray(v.voxel, float)).astype(int), 0, np.array(volume.shape) - 1)
        data[tuple(ijk)] = anatomy.VERSE_ID[v.label]
    return Volume(data, volume.affine.copy())


def write_label_map(result: LabelResult, volume: Volume, path: str | Path) -> None:
    """Write :func:`label_map` as NIfTI (atomically; ``.nii`` or ``.nii.gz``, ``io.nifti.save_nifti``)."""
    from .nifti import save_nifti

    save_nifti(label_map(result, volume), path)


def _display_slice(volume: Volume, result: LabelResult) -> tuple[np.ndarray, np.ndarray, Volume]:
    """The sagittal slice through the labeled vertebrae, (rows=I, cols=P), and the points on it."""
    canon = reorient(volume, ("R", "I", "P"), copy=False)  # a view: one slice is copied below
    if result.vertebrae:
        vox = canon.world_to_voxel(np.array([v.position_mm for v in result.vertebrae]))
        index = int(np.clip(np.round(np.median(vox[:, 0])), 0, canon.shape[0] - 1))
    else:
        vox = np.zeros((0, 3))
        index = canon.shape[0] // 2
    return canon.real_data(index), vox, canon


#: Rows of a slice mapped to grey levels at a time (float64 scratch of a few MB, not a few whole-slice copies).
GRAY_ROWS = 128


def _gray_bytes(img2d: np.ndarray) -> np.ndarray:
    """The slice as uint8 grey levels: the intensity window of ``normalize_intensity``, clipped to [0, 1].

    Mapped ``GRAY_ROWS`` rows at a time (the same values as the whole slice at
    once); a constant or empty slice is black rather than an error.
    """
    from ..preprocessing import apply_window, intensity_window

    out = np.zeros(img2d.shape, dtype=np.uint8)
    try:
        lo, hi = intensity_window(img2d)
    except Exception:  # constant slice: show it black rather than fail
        return out
    for start in range(0, img2d.shape[0], GRAY_ROWS):
        rows = slice(start, start + GRAY_ROWS)
        out[rows] = (np.clip(apply_window(img2d[rows], lo, hi), 0, 1) * 255).astype(np.uint8)
    return out


#: Longest side of an overlay picture (pixels): at least this, so that a 20-25 cm
#: field of view is not drawn at 1 px/mm with unreadable names ...
OVERLAY_MIN_SIZE = 768
#: ... and at most this (a 0.3 mm-pixel series is not drawn at full resolution).
OVERLAY_MAX_SIZE = 1280


def render_overlay(
    volume: Volume, result: LabelResult, path: str | Path, min_size: int = OVERLAY_MIN_SIZE, max_size: int = OVERLAY_MAX_SIZE
) -> None:
    """Save a picture (PNG, or JPEG for .jpg/.jpeg) of the mid-sagittal slice with each vertebra's point and name.

    The longest side is the native resolution, brought into [min_size, max_size]
    pixels. Colours: green = confident, orange = check (confidence < 0.5).
    """
    from io import BytesIO

    from PIL import Image, ImageDraw, ImageFont

    img2d, vox, canon = _display_slice(volume, result)
    gray = _gray_bytes(img2d)
    dr, dc = canon.spacing[1], canon.spacing[2]
    extent = max(img2d.shape[0] * dr, img2d.shape[1] * dc)  # mm
    px = extent / float(np.clip(extent / min(dr, dc), min_size, max_size))  # mm per picture pixel
    size = (max(1, int(round(img2d.shape[1] * dc / px))), max(1, int(round(img2d.shape[0] * dr / px))))
    image = Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, size[1] // 40))
    for v, (_, r, c) in zip(result.vertebrae, vox):
        x, y = c * dc / px, r * dr / px
        colour = (60, 220, 60) if v.confidence >= LOW_CONFIDENCE else (255, 150, 0)
        r = max(4, size[1] // 150)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(0, 0, 0))
        draw.text((x + 2 * r, y - 2 * r), f"{v.label} {v.confidence:.2f}", fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    header = f"{result.model_name} {result.model_version} - {result.region}"
    if result.warnings:
        header += f" - {len(result.warnings)} warning(s)"
    if count_at_risk(result.warnings):
        header += f" - {CHECK_THE_COUNT}"
    draw.text((6, 4), header, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    buf = BytesIO()
    jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    image.save(buf, format="JPEG" if jpeg else "PNG", **({"quality": 92} if jpeg else {}))
    atomic_write_bytes(path, buf.getvalue())
