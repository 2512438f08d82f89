"""Archive-scale labeling from a manifest, resumable: ``spinelabel batch MANIFEST``.

A manifest lists the series to label, one item per row: a CSV with a header
(column ``input``, optional ``id`` and ``series``), JSON lines with the same
keys, or the ``harvest.json`` that ``spinelabel pacs harvest`` writes (its
sagittal series, ids = SeriesInstanceUIDs). The output folder holds

- ``labels/<id>.json`` (and ``labels/<id>.png`` with overlays): one result per item;
- ``done.txt``: the items labeled so far, one per line (``id``, a tab, the
  input it was labeled from), appended after the item's result is written. A
  re-run skips them, so a killed run is resumed by starting it again; an item
  whose manifest input has changed since is labeled again;
- ``failed.csv``: ``id,input,reason`` of the items that failed and have not
  been labeled since (rewritten at most every 2 s while a run goes, and at its end; a cell starting like a
  formula gets a leading ', as in every CSV spinelabel writes). A re-run
  tries them again unless told to skip them;
- ``worklist.csv``: every item done so far (this run and earlier ones), what
  to check first first (:func:`write_worklist`), rewritten at the end of a run.

Only the driver (this process) writes ``done.txt`` and ``failed.csv``; the
workers (:mod:`spinelabel.batch`) write the per-item results. One run at a
time writes into a folder: it holds ``.spinelabel-batch.lock`` there, and a
second run into the same folder stops with one line before it labels anything.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .annotations import from_spreadsheet_text, spreadsheet_text
from .batch import DicomwebSeries, LabelerSpec, Outcome, Task, run_dask, run_here, run_processes
from .errors import InputError
from .jsonfile import parse_json

DONE_NAME = "done.txt"
FAILED_NAME = "failed.csv"
WORKLIST_NAME = "worklist.csv"
#: ``worklist.csv``'s columns.
WORKLIST_COLUMNS = ("id", "input", "check", "warning_codes", "labels", "min_confidence")
#: What a worklist row asks, most urgent first: the count in doubt, some names unsure, a vertebra in view left
#: without a name (:data:`MISSED_CODES`), nothing, no readable result.
CHECK_ORDER = ("count", "names", "missed", "", "result unreadable")
#: Warning codes of a vertebra the image shows but the labels skip: inside the chain, or beyond its end.
MISSED_CODES = frozenset({"missed-level", "missed-at-end"})
LABELS_DIR = "labels"
#: Held by the run writing into an output folder (``_only_run``); hidden, as staged outputs are.
LOCK_NAME = ".spinelabel-batch.lock"
#: ``flock`` errors of a file system that cannot lock at all: a run there goes on without the lock.
UNLOCKABLE = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})
#: How much of the end of ``done.txt`` is read to find a half line (an input path is at most a few KB).
DONE_TAIL_BYTES = 1 << 16
#: What an item id may hold: it names files, so no path separators or spaces.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
MANIFEST_KEYS = ("id", "input", "series")
#: Ends the input of a DICOMweb item that stores its result (``batch --store``), so ``done.txt`` tells a stored item
#: from one only labeled: a run with ``--store`` after one without labels and stores the items again.
STORED_SUFFIX = " +store"


@dataclass(frozen=True)
class ManifestItem:
    """One row of a manifest: ``input`` is absolute (relative paths are taken from the manifest's folder)."""

    id: str
    input: str
    series: str | None = None
    #: A series on a DICOMweb server (``spinelabel batch`` without a manifest); ``input`` then describes it.
    dicomweb: DicomwebSeries | None = None


@dataclass
class ArchiveRun:
    """What a run did; ``failed`` maps id -> (input, reason), including earlier runs' failures not retried."""

    total: int
    done_before: int
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    seconds: float = 0.0
    #: Items this run tried (labeled or failed).
    attempted: int = 0
    #: Items this run labeled whose result warns that the count may be off (a ``count`` warning code).
    count_in_doubt: int = 0
    #: Ids this run labeled.
    done_now: set[str] = field(default_factory=set)

    @property
    def labeled(self) -> int:
        """Items this run labeled."""
        return len(self.done_now)

    @property
    def items_per_minute(self) -> float:
        return 60.0 * self.attempted / self.seconds if self.seconds > 0 else 0.0


def read_manifest(path: Path) -> list[ManifestItem]:
    """The items of a CSV (with header), JSON-lines (``.jsonl``/``.ndjson``) or ``harvest.json`` manifest.

    Raises
    ------
    InputError
        Unreadable file, no ``input`` column, an empty manifest, an id that
        is not a safe file name, or the same id twice.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _harvest_rows(text, path)
    else:
        rows = _jsonl_rows(text, path) if suffix in (".jsonl", ".ndjson") else _csv_rows(text, path)
    if not rows:
        raise InputError(f"manifest {path} lists no items")
    items = _distinct_default_ids([_item(row, n, path) for n, row in enumerate(rows, start=1)], rows)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"manifest {path}: id {item.id!r} appears twice (ids name the result files)")
        seen.add(item.id)
    return items


#: Field separators a CSV manifest may use: spreadsheets in many locales save with ';' (or tabs).
CSV_DELIMITERS = ",;\t"


def _csv_rows(text: str, path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV manifest; a cell the csv module refuses (longer than its field size limit, which a quote
    opened and never closed makes of the rest of a long file) is one line naming the line its row starts on."""
    header = text.split("\n", 1)[0]
    delimiter = max(CSV_DELIMITERS, key=header.count) if any(d in header for d in CSV_DELIMITERS) else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows, line = [], 1  # line: where the row being read starts
    try:
        if not reader.fieldnames or "input" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"manifest {path}: a CSV manifest needs a header with an 'input' column (optional: id, series)")
        line = reader.line_num + 1
        for row in reader:
            where, line = f"manifest {path}, line {line}", reader.line_num + 1
            extra = [cell for cell in row.pop(None, None) or [] if cell.strip()]  # type: ignore[call-overload]
            if extra:
                raise InputError(f"{where}: more cells than the header names ({extra[0]!r})")
            if any("\n" in cell or "\r" in cell for cell in row.values() if isinstance(cell, str)):
                raise InputError(f"{where}: a line break inside a cell (a quote opened and never closed?)")
            cells = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if any(cells.values()):  # a row of empty cells (a spreadsheet's ",,") is no item
                rows.append(cells)
    except csv.Error as exc:
        raise InputError(f"manifest {path}, line {line}: {_csv_refusal(exc)}") from None
    return rows


def _csv_refusal(exc: csv.Error) -> str:
    """What a ``csv.Error`` means for a manifest, in our words where we know them."""
    if "field limit" in str(exc):  # the rest of a long file in one cell
        return f"a cell longer than {csv.field_size_limit()} characters (a quote opened and never closed?)"
    return f"not readable as CSV ({exc})"


def _jsonl_rows(text: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except ValueError:
            raise InputError(f"manifest {path}, line {n}: not valid JSON") from None
        if not isinstance(row, dict):
            raise InputError(f"manifest {path}, line {n}: expected an object with an 'input' key")
        rows.append(row)
    return rows


def _harvest_rows(text: str, path: Path) -> list[dict[str, Any]]:
    """The sagittal image series of a ``spinelabel pacs harvest`` report (``harvest.json``), id = SeriesInstanceUID."""
    try:
        studies = parse_json(text)["studies"]
        return [{"input": image["folder"], "id": image.get("series_uid") or ""} for s in studies for image in s["images"]]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"manifest {path}: a .json manifest must be the harvest.json of 'spinelabel pacs harvest'") from None


def _item(row: dict[str, Any], n: int, path: Path) -> ManifestItem:
    """A manifest row as an item; the id defaults to the input's name (:func:`_default_id`)."""
    raw = str(row.get("input") or "").strip()
    if not raw:
        raise InputError(f"manifest {path}, item {n}: no input")
    if "\n" in raw or "\r" in raw:  # a stray quote in a CSV takes the rows after it into this cell
        raise InputError(f"manifest {path}, item {n}: a line break inside the input (a quote opened and never closed?)")
    # absolute, so that done.txt and the results name the same file whichever folder the run starts in
    where = Path(raw) if Path(raw).is_absolute() else Path(os.path.abspath(path.parent / raw))
    item_id = str(row.get("id") or "").strip() or _default_id(Path(raw).parts[-1:], n)
    if not ID_PATTERN.fullmatch(item_id):
        raise InputError(f"manifest {path}, item {n}: id {item_id!r} must be letters, digits, '.', '_' or '-'")
    return ManifestItem(item_id, str(where), str(row.get("series") or "").strip() or None)


def _default_id(parts: Sequence[str], n: int) -> str:
    """An id from the last parts of an input path (``image.nii.gz`` -> ``image``; ``a/image`` -> ``a_image``).

    Characters an id may not hold become "_"; a name with none left (``脊椎.nii.gz``) becomes ``item-<n>``.
    """
    name = "_".join([*parts[:-1], parts[-1].removesuffix(".gz").removesuffix(".nii")]) if parts else ""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or f"item-{n}"


def _distinct_default_ids(items: list[ManifestItem], rows: list[dict[str, Any]]) -> list[ManifestItem]:
    """Items whose id was not given and repeats get their parent folder's name in it (``myoseg-05_image``).

    A layout of one folder per scan holding ``image.nii.gz`` would otherwise
    give every item the same id. Ids given in the manifest are kept as they are.
    """
    from collections import Counter
    from dataclasses import replace

    given = [bool(str(row.get("id") or "").strip()) for row in rows]
    counts = Counter(item.id for item, g in zip(items, given) if not g)
    return [
        replace(item, id=_default_id(Path(str(row.get("input")).strip()).parts[-2:], n))
        if not g and counts[item.id] > 1 else item
        for n, (item, row, g) in enumerate(zip(items, rows, given), start=1)
    ]


def read_done(out_dir: Path) -> set[str]:
    """The ids in ``done.txt`` (a last line without its newline, cut by a kill, is not counted)."""
    return set(read_done_inputs(out_dir))


def read_done_inputs(out_dir: Path) -> dict[str, str | None]:
    """``done.txt`` as id -> the input it was labeled from (None on a line of an older run, which has no input).

    The last line of an id counts; a last line without its newline, cut by a kill, is not counted.
    """
    path = out_dir / DONE_NAME
    if not path.is_file():
        return {}
    text = _read_own_text(path)
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete (or empty)
    done: dict[str, str | None] = {}
    for line in lines:
        key, tab, recorded = line.partition("\t")  # Windows line ends are gone already (universal newlines)
        if key.strip():
            done[key.strip()] = recorded if tab else None
    return done


def _read_own_text(path: Path) -> str:
    """A file a run of ours wrote (``done.txt``, ``failed.csv``), perhaps saved since by a spreadsheet (a BOM).

    Raises
    ------
    InputError
        It cannot be read, or it is no longer UTF-8 (saved in a spreadsheet's own code page).
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text any more (saved by a spreadsheet?): fix or remove it") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _recordable(item_input: str) -> str:
    """An input as ``done.txt`` records it: tabs and line breaks made spaces (one field of one line)."""
    return " ".join(item_input.replace("\t", " ").splitlines())


def _still_done(recorded: str | None, item_input: str) -> bool:
    """Whether an item recorded in ``done.txt`` as ``recorded`` needs nothing more for ``item_input``.

    The same input (or a line of an older run, without input), or the input
    stored (:data:`STORED_SUFFIX`) where this run only labels.
    """
    return recorded in (None, _recordable(item_input), _recordable(item_input) + STORED_SUFFIX)


def _done_line(key: str, item_input: str) -> str:
    """A ``done.txt`` line: the id, a tab, the input (:func:`_recordable`)."""
    return f"{key}\t{_recordable(item_input)}\n"


def read_failed(out_dir: Path) -> dict[str, tuple[str, str]]:
    """``failed.csv`` as id -> (input, reason); empty when there is none."""
    path = out_dir / FAILED_NAME
    if not path.is_file():
        return {}
    reader = csv.DictReader(io.StringIO(_read_own_text(path), newline=""))
    try:
        rows = [{k: from_spreadsheet_text(v or "") for k, v in r.items() if isinstance(k, str) and isinstance(v, str)}
                for r in reader]
    except csv.Error as exc:  # edited since: a cell over the csv module's size limit
        raise InputError(f"{path} is no longer a failed list of ours ({exc}): fix or remove it") from None
    return {r["id"]: (r.get("input", ""), r.get("reason", "")) for r in rows if r.get("id")}


def _write_failed(out_dir: Path, failed: dict[str, tuple[str, str]]) -> None:
    """Write ``failed.csv`` (atomically); every cell through :func:`~spinelabel.annotations.spreadsheet_text`."""
    from .io.outputs import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "input", "reason"])
    writer.writerows([spreadsheet_text(cell) for cell in (key, inp, reason)] for key, (inp, reason) in sorted(failed.items()))
    atomic_write_bytes(out_dir / FAILED_NAME, buf.getvalue().encode())


class _DoneList:
    """``done.txt`` opened for appending: one ``write`` per id, so a kill never leaves half a line; a write the
    disk cuts short is taken back, and a half line left by an older version is cut off when the file is opened."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / DONE_NAME
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self.fd).st_size
            tail = os.pread(self.fd, min(size, DONE_TAIL_BYTES), size - min(size, DONE_TAIL_BYTES))
            if tail and not tail.endswith(b"\n"):
                os.ftruncate(self.fd, size - len(tail) + tail.rfind(b"\n") + 1)
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> Exception:
        from .errors import OutputError

        return OutputError(f"cannot write {self.path}: {exc.strerror or exc}")

    def add(self, key: str, item_input: str) -> None:
        """Append one line, whole or not at all (OutputError when the disk refuses it)."""
        line = _done_line(key, item_input).encode()
        size = os.fstat(self.fd).st_size
        try:
            if os.write(self.fd, line) != len(line):
                raise OSError(28, os.strerror(28))  # a short write: the disk is full
        except OSError as exc:
            try:
                os.ftruncate(self.fd, size)
            except OSError:
                pass
            raise self._error(exc) from None

    def close(self) -> None:
        os.close(self.fd)


#: ``failed.csv`` is rewritten whole, so not after every failure while a run goes but at most this often (s), and
#: at the run's end: 5000 missing inputs spent 35 s rewriting it, and an archive mount gone offline fails tens of
#: thousands. A kill loses at most this much of the list: those items are not in ``done.txt``, so they are tried again.
FAILED_WRITE_S = 2.0


class _FailedList:
    """``failed.csv`` kept in step with a run's failures (``failed``, updated by the caller)."""

    def __init__(self, out_dir: Path, failed: dict[str, tuple[str, str]]):
        self.out_dir, self.failed, self.pending, self.written = out_dir, failed, False, time.monotonic()

    def changed(self) -> None:
        """Note a change; write when the last write is :data:`FAILED_WRITE_S` old."""
        self.pending = True
        if time.monotonic() - self.written >= FAILED_WRITE_S:
            self.write()

    def write(self) -> None:
        """Write what changed since the last write (atomically: :func:`_write_failed`)."""
        if self.pending:
            _write_failed(self.out_dir, self.failed)
            self.pending, self.written = False, time.monotonic()


def pending_tasks(
    items: list[ManifestItem], out_dir: Path, overlays: bool, skip: set[str], stack: str | None = None
) -> list[Task]:
    """The tasks of the items not in ``skip``, writing to ``out_dir/labels/<id>.json`` (and ``.png``); ``stack``:
    the stack every DICOM item reads of a series holding several (``io.load_image``).

    An item labeled again (its input changed, or it failed before) whose
    overlay an earlier run wrote gets a new overlay too, with or without
    ``overlays``: one item's outputs are always of one scan, never a new result
    beside the picture of another.
    """
    from .io.nifti import is_nifti_file

    labels = out_dir / LABELS_DIR

    def overlay(item: ManifestItem) -> Path | None:
        png = labels / f"{item.id}.png"
        return png if overlays or os.path.lexists(png) else None

    return [
        Task(
            item.id, (item.input,), item.series, labels / f"{item.id}.json", overlay(item), dicomweb=item.dicomweb,
            stack=None if is_nifti_file(item.input) else stack,
        )
        for item in items
        if item.id not in skip
    ]


Runner = Callable[[list[Task]], Iterator[Outcome]]


def make_runner(spec: LabelerSpec, jobs: int = 1, client: Any = None) -> Runner:
    """How tasks are run: on a Dask ``client``, else ``jobs`` worker processes, else this process.

    Raises
    ------
    ModelError, InputError
        In this process (no client, one job): the labeler cannot be loaded;
        it is loaded here, before any task.
    """
    if client is not None:
        return lambda tasks: run_dask(spec, tasks, client)
    if jobs > 1:
        return lambda tasks: run_processes(spec, tasks, jobs)
    labeler = spec.load()
    return lambda tasks: run_here(labeler, tasks)


def run_archive(
    items: list[ManifestItem], out_dir: Path, runner: Runner, overlays: bool = False, skip_failed: bool = False,
    progress: Callable[[Outcome], None] | None = None, stack: str | None = None,
) -> ArchiveRun:
    """Label every manifest item not yet done; record each outcome as it arrives.

    Parameters
    ----------
    items : list of ManifestItem
        From :func:`read_manifest` (ids unique).
    runner : callable
        From :func:`make_runner`.
    skip_failed : bool
        Do not retry the items listed in ``failed.csv``.
    progress : callable, optional
        Called with each outcome (a progress bar). An exception raised from it
        stops the run like a kill: what was recorded stays recorded.
    stack : str, optional
        Of a DICOM series holding several stacks, the one to read (every item).

    Raises
    ------
    OutputError
        The output folder cannot be written.
    """
    prepare_output(out_dir)
    with _only_run(out_dir):
        return _run_alone(items, out_dir, runner, overlays, skip_failed, progress, stack)


@contextlib.contextmanager
def _only_run(out_dir: Path) -> Iterator[None]:
    """Hold :data:`LOCK_NAME` in ``out_dir`` (an advisory lock the system drops with the process, however it ends).

    Two batches into one folder labeled the same items twice and each
    rewrote ``failed.csv`` without the other's failures.

    Raises
    ------
    OutputError
        Another run holds the folder, or the lock file cannot be made.
    """
    import fcntl

    from .errors import OutputError

    path = out_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise OutputError(f"another spinelabel batch is writing into {out_dir}: wait for it to end, "
                              "or give this one another output folder") from None
        if exc.errno not in UNLOCKABLE:
            raise OutputError(f"cannot lock {path}: {exc.strerror or exc}") from None
        yield  # a file system without locks (NFS without its lock daemon): the run goes on unguarded
        return
    try:
        yield
    finally:
        os.close(fd)


def _run_alone(
    items: list[ManifestItem], out_dir: Path, runner: Runner, overlays: bool, skip_failed: bool,
    progress: Callable[[Outcome], None] | None, stack: str | None,
) -> ArchiveRun:
    """:func:`run_archive` once the output folder is this run's alone."""
    ids = {item.id for item in items}
    recorded = read_done_inputs(out_dir)  # an item whose input changed since is labeled again
    done = {item.id for item in items if item.id in recorded and _still_done(recorded[item.id], item.input)}
    failed = {k: v for k, v in read_failed(out_dir).items() if k in ids and k not in done}
    if (out_dir / FAILED_NAME).exists():
        _write_failed(out_dir, failed)  # drop entries labeled since, or no longer in the manifest
    tasks = pending_tasks(items, out_dir, overlays, done | (set(failed) if skip_failed else set()), stack)
    run = ArchiveRun(total=len(items), done_before=len(done), failed=failed)
    inputs = {item.id: item.input for item in items}
    done_list, failed_list, start = _DoneList(out_dir), _FailedList(out_dir, run.failed), time.perf_counter()
    try:
        for outcome in runner(tasks):
            _record(outcome, run, done_list, failed_list, inputs)
            if progress is not None:
                progress(outcome)
    finally:
        done_list.close()
        failed_list.write()
        run.seconds = time.perf_counter() - start
    write_worklist(out_dir, [item for item in items if item.id in done or item.id in run.done_now])
    return run


def worklist_row(item: ManifestItem, doc: dict[str, Any] | None) -> dict[str, str]:
    """The ``worklist.csv`` row of a labeled item from its result document (None: unreadable).

    ``check`` is ``count`` when a warning doubts the count (a code of concern
    ``count``), ``names`` when some name is below 0.5, ``missed`` when a
    vertebra in view has no name (:data:`MISSED_CODES`), else empty.
    """
    from .results import LOW_CONFIDENCE
    from .warning_codes import count_at_risk, document_warnings

    unreadable = {"id": item.id, "input": item.input, "check": CHECK_ORDER[-1], "warning_codes": "", "labels": "",
                  "min_confidence": ""}
    if doc is None:
        return unreadable
    try:
        warnings = document_warnings(doc)
        confidences = [float(v["confidence"]) for v in doc["vertebrae"]]
        labels = " ".join(str(v["label"]) for v in doc["vertebrae"])
    except (KeyError, TypeError, ValueError):  # not a result document: said in the row, the batch goes on
        return unreadable
    unsure = any(c < LOW_CONFIDENCE for c in confidences)
    missed = any(w.code in MISSED_CODES for w in warnings)
    check = "count" if count_at_risk(warnings) else "names" if unsure else "missed" if missed else ""
    return {
        **unreadable, "check": check,
        "warning_codes": " ".join(w.code for w in warnings), "labels": labels,
        "min_confidence": f"{min(confidences):.2f}" if confidences else "",
    }


def write_worklist(out_dir: Path, items: list[ManifestItem]) -> None:
    """Write ``worklist.csv`` (atomically): one :func:`worklist_row` per labeled item, what to check first first.

    Rows are ordered by :data:`CHECK_ORDER`, then by the lowest confidence,
    then by id; every cell through :func:`~spinelabel.annotations.spreadsheet_text`.
    """
    from .io.outputs import atomic_write_bytes
    from .jsonfile import read_json

    rows = []
    for item in items:
        try:
            doc = read_json(out_dir / LABELS_DIR / f"{item.id}.json")
        except InputError:
            doc = None
        rows.append(worklist_row(item, doc if isinstance(doc, dict) else None))
    rows.sort(key=lambda r: (CHECK_ORDER.index(r["check"]), float(r["min_confidence"] or "inf"), r["id"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, WORKLIST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_text(v) for k, v in row.items()} for row in rows)
    atomic_write_bytes(out_dir / WORKLIST_NAME, buf.getvalue().encode())


def prepare_output(out_dir: Path) -> None:
    """Create ``out_dir/labels``; OutputError (one line) when the folder cannot be made or written."""
    from .errors import OutputError
    from .io.outputs import check_output_target, check_writable_folder

    check_writable_folder(out_dir / LABELS_DIR)
    for name in (DONE_NAME, FAILED_NAME, WORKLIST_NAME):
        check_output_target(out_dir / name)
    try:
        (out_dir / LABELS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir / LABELS_DIR}: {exc.strerror or exc}") from None


def _record(
    outcome: Outcome, run: ArchiveRun, done_list: _DoneList, failed_list: _FailedList, inputs: dict[str, str]
) -> None:
    """Append a labeled item to ``done.txt``, or list a failed one in ``failed.csv``."""
    run.attempted += 1
    if outcome.ok:
        done_list.add(outcome.key, inputs[outcome.key])
        run.done_now.add(outcome.key)
        run.count_in_doubt += outcome.count_in_doubt
        if run.failed.pop(outcome.key, None) is not None:
            failed_list.changed()
        return
    run.failed[outcome.key] = (inputs[outcome.key], outcome.error or "failed")
    failed_list.changed()
