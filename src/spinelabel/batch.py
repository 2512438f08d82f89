"""Labeling many images with one model per worker: in this process, in worker processes, or on Dask.

A :class:`Task` says what to read and where its outputs go; a worker labels it
with :func:`label_task` (``pipeline.label_to_files``, the one read-label-write
path; a series on a DICOMweb server: ``pacs.label_series``, the one
retrieve-label-store path) and answers an :class:`Outcome`. One bad item is one failed
outcome, never the end of the batch. Each worker process loads its labeler once
(:func:`cached_labeler`) with one torch thread, so N workers use N cores
without OpenMP threads competing for them.

Runners, all yielding outcomes as they finish: :func:`run_here` (this
process), :func:`run_processes` (a ``concurrent.futures`` process pool) and
:func:`run_dask` (a ``dask.distributed`` client: a local or remote cluster).
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, ModelError, SpinelabelError, one_line
from .warning_codes import count_at_risk

if TYPE_CHECKING:
    from .pacs_client import PacsConfig

#: Torch threads of each worker process: N workers then use N cores with no
#: OpenMP threads contending for them (issue 15: 2 processes x 1 thread beat 1 x 2).
WORKER_THREADS = 1
#: Memory one worker process peaks at while labeling a clinical series: 477-506 MiB measured for the lumbar model
#: on the held-out scans (docs/RESULTS.md, lumbar benchmark), 0.25 GiB of it torch and the model alone; the models
#: are a few MB each, so ``--region auto`` (every shipped model per worker) adds little. More workers than the
#: machine's memory holds at this size swap or are killed; ``--jobs`` is not capped at the cores (a PACS retrieval
#: waits on the network), only here.
WORKER_PEAK_BYTES = 512 * 2**20
#: Files with a container's memory limit: cgroup v2 (``max`` when none), then v1 (a huge number when none). A
#: container sees the host's physical memory.
CGROUP_MEMORY_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@dataclass(frozen=True)
class LabelerSpec:
    """What a worker loads once: picklable and hashable (the key of :func:`cached_labeler`).

    Attributes
    ----------
    region : str
        lumbar, cervical, whole or auto (``pipeline.make_labeler``).
    model : str, optional
        Model directory or shipped model name; None: the region's shipped model.
    threads : int, optional
        Torch threads of the process; None: ``threads.thread_count()``.
    factory : str, optional
        ``"module:function"`` returning a labeler, used instead of
        ``make_labeler`` (tests: ``spinelabel.testing.dummy:blob_labeler``).
    check_orientation : bool
        Run the upside-down check (default); off: ``--trust-orientation``.
    """

    region: str = "lumbar"
    model: str | None = None
    threads: int | None = WORKER_THREADS
    factory: str | None = None
    check_orientation: bool = True

    def load(self) -> Any:
        """The labeler (``pipeline.Labeler`` or ``AutoLabeler``); raises ModelError/InputError."""
        if self.factory is not None:
            module, _, name = self.factory.partition(":")
            return getattr(importlib.import_module(module), name)()
        from .pipeline import make_labeler

        return make_labeler(self.region, self.model, threads=self.threads, check_orientation=self.check_orientation)


@dataclass(frozen=True)
class Task:
    """One image to label and the outputs to write (None: not written).

    Attributes
    ----------
    key : str
        The item's name in outcomes, done-lists and messages.
    inputs : tuple of str
        A NIfTI file, a DICOM folder, or the DICOM files of one series.
    """

    key: str
    inputs: tuple[str, ...]
    series: str | None = None
    json: Path | None = None
    overlay: Path | None = None
    sr: Path | None = None
    gsps: Path | None = None
    #: A series on a DICOMweb server, retrieved by the worker (``inputs`` then only describes it).
    dicomweb: "DicomwebSeries | None" = None
    #: The stack to read of a DICOM series holding several (``io.load_image``).
    stack: str | None = None
    #: A NIfTI point-label map on the input's grid (``io.outputs.label_map``; files only, not DICOMweb items).
    label_map: Path | None = None

    def outputs(self) -> list[Path]:
        """The files this task writes."""
        return [p for p in (self.json, self.overlay, self.sr, self.gsps, self.label_map) if p is not None]


@dataclass(frozen=True)
class DicomwebSeries:
    """One series on a DICOMweb server: what a worker retrieves (WADO-RS) and labels.

    Attributes
    ----------
    config : PacsConfig
        The server and its credentials (they travel with the task to the worker).
    store : bool
        Store the SR and GSPS back on the server (STOW-RS) after labeling;
        they are also kept beside the JSON.
    """

    config: PacsConfig
    study_uid: str
    series_uid: str
    store: bool = False


@dataclass(frozen=True)
class Outcome:
    """What became of a task: ``error`` is None when it was labeled and written.

    ``fatal`` marks a worker that could not load its labeler (a corrupt model):
    every task would fail the same way, so the runners stop the batch.
    """

    key: str
    error: str | None = None
    n_vertebrae: int = 0
    seconds: float = 0.0
    fatal: bool = False
    #: The result carries a warning that its count may be off (``warning_codes.count_at_risk``).
    count_in_doubt: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def label_task(labeler: Any, task: Task) -> tuple[int, bool]:
    """Label one task into its outputs; the number of vertebrae found, and whether a warning doubts their count.

    Files go through ``pipeline.label_to_files``; a DICOMweb series through
    ``pacs.label_series``, the retrieve-label-store path of ``spinelabel pacs
    label``. With ``store`` the SR and GSPS are written beside the JSON
    (``<id>.sr.dcm``, ``<id>.gsps.dcm``) and stored; a failed store fails the
    item, so a re-run labels and stores it again.

    Raises
    ------
    SpinelabelError
        The image cannot be retrieved, read, labeled, written or stored.
    """
    if task.dicomweb is None:
        from .pipeline import label_to_files

        result = label_to_files(
            labeler, task.inputs, task.series, task.json, task.overlay, task.sr, task.gsps, task.stack,
            label_map=task.label_map,
        )
        return len(result.vertebrae), count_at_risk(result.warnings)
    from .pacs import SeriesOutputs, label_series
    from .pacs_client import connect

    source = task.dicomweb
    if task.json is None:
        raise InputError(f"DICOMweb item {task.key} has no JSON output")
    if source.store:
        outputs = SeriesOutputs.beside(task.json, overlay=task.overlay)
    else:
        outputs = SeriesOutputs(task.json, task.sr, task.gsps, task.overlay)
    client = connect(source.config)
    labeled = label_series(
        client, source.study_uid, source.series_uid, labeler, outputs, do_store=source.store, stack=task.stack
    )
    return labeled.n_vertebrae, count_at_risk(labeled.warnings)


def run_task(labeler: Any, task: Task) -> Outcome:
    """Label one task (:func:`label_task`); any failure becomes a failed outcome with a one-line reason.

    Beyond the expected ``SpinelabelError``, an unexpected exception (a bug,
    a reader crashing on a strange file, memory) fails this item only: in an
    archive of thousands of series one item must not stop the rest.
    """
    start = time.perf_counter()
    try:
        n_vertebrae, in_doubt = label_task(labeler, task)
    except SpinelabelError as exc:
        return Outcome(task.key, _one_line(str(exc)), seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - reported as this item's failure, see docstring
        return Outcome(task.key, _one_line(f"unexpected error: {type(exc).__name__}: {one_line(exc)}"), seconds=time.perf_counter() - start)
    return Outcome(task.key, None, n_vertebrae, time.perf_counter() - start, count_in_doubt=in_doubt)


def _one_line(message: str) -> str:
    """``message`` as one line (:func:`errors.one_line`), never empty: an item's reason marks it as failed."""
    return one_line(message) or "failed"


_LOADED: dict[LabelerSpec, Any] = {}
_LOAD_LOCK = threading.Lock()


def cached_labeler(spec: LabelerSpec) -> Any:
    """The labeler of ``spec``, loaded once per process (thread-safe): what a worker calls per task.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` first when torch is not yet imported.
    """
    from .threads import passive_openmp

    with _LOAD_LOCK:
        if spec not in _LOADED:
            passive_openmp()
            _LOADED[spec] = spec.load()
        return _LOADED[spec]


def worker_task(spec: LabelerSpec, task: Task) -> Outcome:
    """Label ``task`` with this worker's labeler (process pools and Dask workers run this)."""
    try:
        labeler = cached_labeler(spec)
    except SpinelabelError as exc:
        return Outcome(task.key, _one_line(str(exc)), fatal=True)
    return run_task(labeler, task)


#: How often (s) a worker process looks whether the process that started it is still there.
PARENT_CHECK_S = 1.0


def _exit_with_parent() -> None:
    """Leave this worker process as soon as its parent is gone (a ``kill -9`` of the batch): a pool's workers hold
    both ends of their task queue, so they would wait for work forever, a loaded model each."""
    import os

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="spinelabel-parent-watch", daemon=True).start()


def _warm_worker(spec: LabelerSpec) -> None:
    """Process-pool initializer: load the labeler before the first task (errors come with the tasks).

    Ctrl+C reaches every process of the terminal's group; the workers leave it
    to the batch, which stops them (:func:`_stop_workers`): a worker that took
    it in the middle of its loop died, the batch read that as a crash and
    started a new pool, and a second Ctrl+C could then leave it waiting forever.
    Workers started by :func:`_submit` ignore it from their first instruction;
    this covers pools started outside the main thread.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    try:
        cached_labeler(spec)
    except SpinelabelError:
        pass  # worker_task reports it as a fatal outcome


def _submit(pool: Any, task: Task, spec: LabelerSpec) -> Any:
    """``pool.submit`` of one task, with Ctrl+C ignored while it may start a worker process: an ignored signal
    stays ignored in the child (a handled one does not), so a Ctrl+C during the worker's start-up, before its
    initializer, is not a traceback from every worker. A Ctrl+C in these microseconds is lost (press again)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return pool.submit(worker_task, spec, task)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return pool.submit(worker_task, spec, task)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)  # None: a C handler


def _checked(outcome: Outcome) -> Outcome:
    if outcome.fatal:
        raise ModelError(f"a worker could not load the model: {outcome.error}")
    return outcome


def run_here(labeler: Any, tasks: Iterable[Task]) -> Iterator[Outcome]:
    """Label the tasks one after another in this process with ``labeler`` (e.g. ``LabelerSpec.load()``)."""
    for task in tasks:
        yield run_task(labeler, task)


#: Tasks that killed their worker process alone, with none finished yet, that stop a batch: one such task is a bad
#: item (it fails alone), two different ones before any success mean the workers cannot work at all.
SYSTEMATIC_DEATHS = 2


def memory_bytes() -> int | None:
    """Memory this process may use: the physical memory, or the container's limit when lower; None: unknown."""
    try:
        known = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        known = []
    for path in CGROUP_MEMORY_LIMITS:
        try:
            limit = path.read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            known.append(int(limit))
    known = [k for k in known if k > 0]
    return min(known) if known else None


def check_jobs(jobs: int, memory: int | None = None) -> None:
    """Refuse more worker processes than the machine's memory holds at :data:`WORKER_PEAK_BYTES` each.

    Parameters
    ----------
    jobs : int
        Worker processes asked for.
    memory : int, optional
        Bytes available to the workers; None: :func:`memory_bytes` (no check when that is unknown).

    Raises
    ------
    InputError
        ``jobs`` workers would need more memory than there is.
    """
    memory = memory_bytes() if memory is None else memory
    if memory is None or jobs <= 1:
        return
    most = max(1, memory // WORKER_PEAK_BYTES)
    if jobs > most:
        raise InputError(
            f"--jobs {jobs}: each worker process needs about {WORKER_PEAK_BYTES / 2**30:.2f} GiB, and this machine "
            f"has {memory / 2**30:.1f} GiB: use at most --jobs {most} (cores: {os.cpu_count() or 'unknown'})")


def run_processes(spec: LabelerSpec, tasks: Iterable[Task], jobs: int) -> Iterator[Outcome]:
    """Label the tasks in ``jobs`` worker processes, each loading the labeler once; outcomes as they finish.

    Workers are started with ``spawn`` (no fork of a process that has torch's
    thread pools). Closing the iterator early, Ctrl+C or SIGTERM start no new
    task and give those in flight :data:`STOP_GRACE_S` before their workers
    are ended (:func:`_stop_workers`).
    When a worker dies (killed, out of memory), each task that was in flight
    runs again alone in a pool of its own: the one that kills its worker again
    fails alone ("died twice"), and the tasks not started go on in a new pool.

    Raises
    ------
    ModelError
        A worker could not load the labeler, or :data:`SYSTEMATIC_DEATHS`
        tasks killed their worker alone before any task finished (the model
        itself does not fit: every item would fail, one pool start each).
    """
    todo, finished, died = list(tasks), 0, 0
    while todo:
        broken = _Broken()
        for outcome in _pooled(spec, todo, jobs, broken):
            finished += 1
            yield outcome
        died_again = []
        for task in broken.in_flight:  # each alone: a second death names the task that causes it
            again = _Broken()
            for outcome in _pooled(spec, [task], 1, again):
                finished += 1
                yield outcome
            died_again += again.in_flight
        died += len(died_again)
        if died >= SYSTEMATIC_DEATHS and not finished:
            raise ModelError("worker processes die before they finish any item (killed, or out of memory?)")
        for task in died_again:
            yield Outcome(task.key, "its worker process died twice (killed, or out of memory?)")
        todo = broken.not_started


@dataclass
class _Broken:
    """What a pool that broke (a worker died) left: the tasks in flight and those not started, in order."""

    in_flight: list[Task] = field(default_factory=list)
    not_started: list[Task] = field(default_factory=list)


def _pooled(spec: LabelerSpec, tasks: list[Task], jobs: int, broken: _Broken) -> Iterator[Outcome]:
    """Outcomes of ``tasks`` from one process pool that holds at most ``jobs`` of them at a time, so that when a
    worker dies the tasks that may have killed it are known (``broken``)."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_worker, initargs=(spec,)
    )
    waiting, in_flight = deque(tasks), dict[Future, Task]()
    try:
        while waiting or in_flight:
            while waiting and len(in_flight) < jobs:
                in_flight[_submit(pool, waiting[0], spec)] = waiting[0]  # a broken pool refuses here
                waiting.popleft()
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            lost = [f for f in done if isinstance(f.exception(), BrokenProcessPool)]
            for future in [f for f in done if f not in lost]:  # what finished before the death is kept
                del in_flight[future]
                yield _checked(future.result())
            if lost:
                raise BrokenProcessPool("a worker process died")
    except BrokenProcessPool:
        broken.in_flight, broken.not_started = list(in_flight.values()), list(waiting)
    except BaseException:  # Ctrl+C, SIGTERM, the outcomes no longer wanted: no new task, and an end in bounded time
        _stop_workers(pool, list(in_flight))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: Seconds the tasks in flight get to finish when a batch is stopped (Ctrl+C, SIGTERM) before their worker processes
#: are ended: a scan takes about a second; a retrieval from a slow archive is not waited for.
STOP_GRACE_S = 10.0


def _stop_workers(pool: Any, in_flight: list[Any]) -> None:
    """Let the tasks in flight finish for up to :data:`STOP_GRACE_S`, then end the pool's worker processes.

    A second Ctrl+C cuts the wait short, never the ending: the processes are
    ended in a ``finally`` (a pool whose workers live on keeps the
    interpreter's exit waiting for them). ``ProcessPoolExecutor`` has no public
    way to end its workers before Python 3.14 (``terminate_workers``).
    """
    from concurrent.futures import wait

    try:
        wait(in_flight, timeout=STOP_GRACE_S)
    finally:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()


def run_dask(spec: LabelerSpec, tasks: Iterable[Task], client: Any) -> Iterator[Outcome]:
    """Label the tasks on a Dask cluster; each worker process loads the labeler once (:func:`cached_labeler`).

    Parameters
    ----------
    client : distributed.Client
        Connected to a local or remote scheduler. The workers need
        spinelabel installed and must see the input and output paths.

    Notes
    -----
    A task whose worker dies is retried by Dask on another worker; one that
    keeps killing workers (``KilledWorker``) becomes a failed outcome.
    """
    from distributed import as_completed

    futures = {client.submit(worker_task, spec, task, pure=False): task for task in tasks}
    try:
        for future in as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - the worker died on it, or the cluster lost it
                outcome = Outcome(task.key, _one_line(f"worker failed: {type(exc).__name__}: {one_line(exc)}"))
            yield _checked(outcome)
    finally:
        client.cancel(list(futures))
