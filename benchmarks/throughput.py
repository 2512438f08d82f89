"""Throughput benchmark (issue 15): batches, thread policy under load, forward-pass speed-ups, memory, archive runs.

Usage (from the repository root, with ../shared beside it, on an otherwise quiet machine)::

    python -m benchmarks.throughput [--quick] [--results docs/RESULTS.md] [--only memory]

Measured side by side in one run:

1. a batch of 20 scans (``spinelabel label ... --output-dir``) as one process and
   with ``--jobs 2``, on a quiet machine (with and without the upside-down
   check: ``--trust-orientation``) and under a competing CPU load (one
   busy process per core), plus the old default (2 spinning OpenMP threads)
   under the same load, the same load run as background work (``nice``),
   the operator's remedy, and the same load started in a session of its own
   (another user's job or service, shared by the kernel job against job);
2. the forward pass before and after the speed-ups (batch norm folded into
   the convolutions, channels-last), with the labels and network outputs of
   both compared on shared scans (lumbar model on lumbar scans, cervical model
   on cervical scans);
3. peak memory of ``spinelabel label`` (JSON and overlay) on a large DICOM
   series (1267 x 1267 x 26, resampled from a shared scan);
4. ``spinelabel batch`` over 200 manifest items (links to shared scans, 10 bad
   ones) on a 2-worker Dask LocalCluster, killed once and resumed; then the
   same with ``--trust-orientation``.

``--quick`` is a smoke run (a few scans, a smaller series, 20 items): it
proves the script works, not the numbers. ``--only memory`` measures part 3
alone and replaces only its line of the section (with its own command, date
and commit). Writes the "throughput" section of
the results file with the command, date and commit.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import git_commit, write_section

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXE = Path(sys.executable).with_name("spinelabel")


@dataclass(frozen=True)
class Sizes:
    """How much each part measures: the full run, or ``--quick``."""

    batch: int = 20
    forward_lumbar: int = 67
    large_shape: tuple[int, int, int] = (1267, 1267, 26)
    archive_items: int = 200
    archive_bad: int = 10
    kill_after: int = 60


QUICK = Sizes(batch=3, forward_lumbar=3, large_shape=(634, 634, 26), archive_items=20, archive_bad=4, kill_after=6)


def lumbar_scans(n: int) -> list[Path]:
    """The first ``n`` shared lumbar images (sorted by case)."""
    cases = sorted(p for p in (DATA / "lumbar-mr").iterdir() if (p / "image.nii.gz").is_file())
    return [c / "image.nii.gz" for c in cases[:n]]


def cervical_scans() -> list[Path]:
    """The shared cervical images (NIfTI files under cervical-mr)."""
    root = DATA / "cervical-mr"
    return sorted(p for p in root.rglob("*.nii.gz") if "label" not in p.name and "seg" not in p.name) if root.is_dir() else []


# --- 1. batches, quiet and under load -------------------------------------------------------------------


class CompetingLoad:
    """One busy-looping process per core while the block runs (another job on the server).

    ``niceness`` > 0 runs that job at a lower priority, as an operator would run
    background batch work beside a clinical service (``nice -n 10``, or the
    service's systemd ``CPUWeight``): the kernel then shares the cores by weight.
    ``own_session`` starts the job in a session of its own, as another user's
    job or another service is: with the kernel's autogroups (or systemd's
    per-service cgroups) the cores are then shared between the two jobs, not
    between their processes. Without it the busy processes belong to the
    benchmark's own session and compete process by process.
    """

    def __init__(self, n: int, niceness: int = 0, own_session: bool = False):
        self.n, self.niceness, self.own_session, self.procs = n, niceness, own_session, []

    def __enter__(self) -> "CompetingLoad":
        if self.own_session:  # one session (one autogroup) whose leader forks the other busy processes
            code = f"import os; os.nice({self.niceness})\nfor _ in range({self.n - 1}):\n    if os.fork() == 0: break\nwhile True: pass"
            self.procs = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True)]
        else:
            code = f"import os; os.nice({self.niceness})\nwhile True: pass"
            self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if self.own_session:
                os.killpg(p.pid, signal.SIGKILL)  # the leader and its forks
            else:
                p.send_signal(signal.SIGKILL)
            p.wait()


def _autogroup_state() -> str:
    """'on' or 'off' as /proc/sys/kernel/sched_autogroup_enabled says, 'unknown' where it cannot be read."""
    try:
        return {"1": "on", "0": "off"}.get(Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip(), "unknown")
    except OSError:
        return "unknown"


#: The switch that skips the upside-down check (a second pass of the network on each surely named scan).
TRUST = "--trust-orientation"


def batch_seconds(scans: list[Path], jobs: int, env: dict[str, str] | None = None, options: tuple[str, ...] = ()) -> float:
    """Wall time of one ``spinelabel label SCANS --output-dir --jobs [options]`` process (start-up and model load
    included)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(EXE), "label", *map(str, scans), "--output-dir", tmp, "--jobs", str(jobs), "-q", *options]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})
        return time.perf_counter() - t


#: The operator's remedy for a busy server: other work at a lower priority. Nice 10 weighs
#: 110 against 1024 for nice 0 in the kernel's fair scheduler, so the service keeps ~90 % of a core.
BACKGROUND_NICENESS = 10

#: The thread policy before issue 15: torch's default (spinning) OpenMP waits, 2 threads on this 2-core machine.
OLD_POLICY = {"OMP_WAIT_POLICY": "ACTIVE", "SPINELABEL_THREADS": "2"}


def batch_table(scans: list[Path]) -> tuple[str, dict[str, float]]:
    """Per-scan time of the batch: 1 process vs --jobs 2, quiet vs loaded, and the old policy under load."""
    cores = len(os.sched_getaffinity(0))
    rows = [("quiet", 1, None), ("quiet", 2, None)]
    per_scan: dict[str, float] = {}
    for label, jobs, env in rows:
        per_scan[f"{label} jobs={jobs}"] = batch_seconds(scans, jobs, env) / len(scans)
        per_scan[f"{label} trusted jobs={jobs}"] = batch_seconds(scans, jobs, env, (TRUST,)) / len(scans)
    with CompetingLoad(cores):
        for label, jobs, env in [("load", 1, None), ("load", 2, None), ("load, old policy", 1, OLD_POLICY)]:
            per_scan[f"{label} jobs={jobs}"] = batch_seconds(scans, jobs, env) / len(scans)
    with CompetingLoad(cores, niceness=BACKGROUND_NICENESS):
        for jobs in (1, 2):
            per_scan[f"background load jobs={jobs}"] = batch_seconds(scans, jobs) / len(scans)
    with CompetingLoad(cores, own_session=True):
        for jobs in (1, 2):
            per_scan[f"other session jobs={jobs}"] = batch_seconds(scans, jobs) / len(scans)
    q1, q2 = per_scan["quiet jobs=1"], per_scan["quiet jobs=2"]
    t1, t2 = per_scan["quiet trusted jobs=1"], per_scan["quiet trusted jobs=2"]
    autogroups = f"kernel autogroups {_autogroup_state()}"
    lines = [
        f"Batch of {len(scans)} scans, whole process (start-up and model load included), per scan:",
        "",
        "| machine | 1 process | --jobs 2 | --jobs 2 throughput vs 1 process |",
        "|---|---|---|---|",
        f"| quiet | {q1:.2f} s | {q2:.2f} s | {q1 / q2:.2f}x |",
        f"| quiet, `{TRUST}` (no upside-down check) | {t1:.2f} s ({t1 / q1:.2f}x with it) "
        f"| {t2:.2f} s ({t2 / q2:.2f}x with it) | {t1 / t2:.2f}x |",
        f"| {cores} busy processes beside it | {per_scan['load jobs=1']:.2f} s ({per_scan['load jobs=1'] / q1:.2f}x quiet) "
        f"| {per_scan['load jobs=2']:.2f} s ({per_scan['load jobs=2'] / q2:.2f}x quiet) "
        f"| {per_scan['load jobs=1'] / per_scan['load jobs=2']:.2f}x |",
        f"| same load, old policy (spinning OpenMP waits, 2 threads) | {per_scan['load, old policy jobs=1']:.2f} s "
        f"({per_scan['load, old policy jobs=1'] / q1:.2f}x quiet) | | |",
        f"| same load run as background work (`nice -n {BACKGROUND_NICENESS}`) "
        f"| {per_scan['background load jobs=1']:.2f} s ({per_scan['background load jobs=1'] / q1:.2f}x quiet) "
        f"| {per_scan['background load jobs=2']:.2f} s ({per_scan['background load jobs=2'] / q2:.2f}x quiet) "
        f"| {per_scan['background load jobs=1'] / per_scan['background load jobs=2']:.2f}x |",
        f"| same load as another session's job ({autogroups}) "
        f"| {per_scan['other session jobs=1']:.2f} s ({per_scan['other session jobs=1'] / q1:.2f}x quiet) "
        f"| {per_scan['other session jobs=2']:.2f} s ({per_scan['other session jobs=2'] / q2:.2f}x quiet) "
        f"| {per_scan['other session jobs=1'] / per_scan['other session jobs=2']:.2f}x |",
    ]
    return "\n".join(lines), per_scan


# --- 2. forward pass before / after, with label equality ------------------------------------------------


def network_outputs(volume, config, net, batch_size: int = 8):
    """Raw network outputs (logits and level), shape (S, C, R, Cols), and the seconds of the forward passes alone."""
    import numpy as np
    import torch

    from spinelabel.detection import frame_spec
    from spinelabel.preprocessing import normalize_intensity, to_model_frame

    frame = to_model_frame(volume, frame_spec(config))
    data = normalize_intensity(frame.data, config.intensity_percentiles)
    div = net.divisor
    padded = np.pad(data, ((0, 0), (0, (-data.shape[1]) % div), (0, (-data.shape[2]) % div)))
    outs, seconds = [], 0.0
    with torch.inference_mode():
        for start in range(0, padded.shape[0], batch_size):
            x = torch.from_numpy(padded[start : start + batch_size, None]).contiguous(memory_format=torch.channels_last)
            t = time.perf_counter()
            outs.append(net(x).numpy())
            seconds += time.perf_counter() - t
    return np.concatenate(outs), seconds


def _labels(labeler, volume) -> tuple:
    """(label, position, confidence) per vertebra and the warnings; the error message when it refuses."""
    from spinelabel.errors import SpinelabelError

    try:
        result = labeler.label(volume)
    except SpinelabelError as exc:
        return ("refused", str(exc))
    return tuple((v.label, tuple(v.position_mm), v.confidence) for v in result.vertebrae), tuple(result.warnings)


#: Labels count as the same when the names and warnings are equal and the positions and confidences agree
#: to these (float rounding of the folded weights moves them by ~1e-5).
SAME_POSITION_MM, SAME_CONFIDENCE = 0.01, 1e-3


def _same(a: tuple, b: tuple) -> bool:
    """Whether two ``_labels`` answers are the same labeling (see SAME_POSITION_MM)."""
    if a[0] == "refused" or b[0] == "refused":
        return a == b
    (va, wa), (vb, wb) = a, b
    if wa != wb or [v[0] for v in va] != [v[0] for v in vb]:
        return False
    return all(
        max(abs(p - q) for p, q in zip(x[1], y[1])) <= SAME_POSITION_MM and abs(x[2] - y[2]) <= SAME_CONFIDENCE
        for x, y in zip(va, vb)
    )


def compare_forward(model: str, scans: list[Path]) -> dict:
    """Before (as loaded) vs after (``prepare_for_inference``): forward seconds, max output difference, labels equal."""
    import numpy as np

    from spinelabel.io import load_image
    from spinelabel.models import load_model
    from spinelabel.models.network import prepare_for_inference
    from spinelabel.pipeline import Labeler

    import torch

    from spinelabel.threads import thread_count

    torch.set_num_threads(thread_count())  # as a labeling process runs it
    config, base = load_model(model)
    fast = prepare_for_inference(copy.deepcopy(base))
    before, after, max_diff, same, differ = 0.0, 0.0, 0.0, 0, []
    for i, scan in enumerate(scans):
        volume = load_image([scan]).volume
        order = [(base, "b"), (fast, "f")] if i % 2 == 0 else [(fast, "f"), (base, "b")]
        outs = {}
        for net, key in order:  # alternate who goes first: caches and turbo favour neither
            outs[key], seconds = network_outputs(volume, config, net)
            before, after = (before + seconds, after) if key == "b" else (before, after + seconds)
        max_diff = max(max_diff, float(np.abs(outs["b"] - outs["f"]).max()))
        if _same(_labels(Labeler(config, base), volume), _labels(Labeler(config, fast), volume)):
            same += 1
        else:
            differ.append(scan.parent.name)
    return {"model": model, "scans": len(scans), "before_s": before, "after_s": after, "max_diff": max_diff,
            "same": same, "differ": differ}


def forward_table(results: list[dict], threads: int) -> str:
    lines = [
        f"Forward pass before and after the speed-ups (batch norm folded, channels-last), {threads} thread(s), "
        "both on the same scans in alternating order; labels compared in full (names, positions, confidences, warnings):",
        "",
        "| model, scans | forward before | after | speed-up | max output difference | same labels |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r["scans"]:
            continue
        lines.append(
            f"| {r['model']}, {r['scans']} | {r['before_s']:.2f} s | {r['after_s']:.2f} s | {r['before_s'] / r['after_s']:.2f}x "
            f"| {r['max_diff']:.1e} | {r['same']} of {r['scans']}{' (differ: ' + ', '.join(r['differ']) + ')' if r['differ'] else ''} |"
        )
    return "\n".join(lines)


# --- 3. peak memory on a large series -------------------------------------------------------------------


#: Voxels to spare at the far end of ``large_series``'s grid: with the new step (n - 1) / (shape - 1 + 0.5)
#: old steps, ``resample_grid`` counts floor(shape - 0.5) + 1 = shape voxels, far from any rounding edge.
LARGE_SERIES_SLACK = 0.5


def large_series(scan: Path, shape: tuple[int, int, int], folder: Path, integer: bool = True) -> Path:
    """``scan`` resampled to sagittal DICOM slices of ``shape`` (columns, rows, slices), written into ``folder``.

    ``integer``: pixel values rounded to whole numbers, so the series is stored
    with RescaleSlope 1 as most MR scanners write it; otherwise the resampled
    fractional values are kept and the writer stores them with a fractional
    slope (as some vendors' series carry), which the reader holds as the
    stored integers and the slope (``Volume.rescale``).

    The new voxels span the scan's voxel centres (``resample_grid`` keeps the
    first centre and stays within the last), with ``LARGE_SERIES_SLACK`` of a
    voxel to spare so that its rounding down cannot lose one: exactly ``shape``.
    """
    import numpy as np

    from spinelabel.geometry import reorient, resample_grid
    from spinelabel.io import load_image
    from spinelabel.io.dicom_write import write_dicom_series

    pil = reorient(load_image([scan]).volume, ("P", "I", "L"))  # one file per sagittal slice
    span = (np.array(pil.shape) - 1) * pil.spacing  # first to last voxel centre, mm
    spacing = span / (np.array(shape) - 1 + LARGE_SERIES_SLACK)
    big = resample_grid(pil, spacing)
    assert big.shape == tuple(shape), f"large_series: {big.shape} instead of {shape}"
    if integer:
        big = type(big)(np.rint(big.data), big.affine)
    write_dicom_series(big, folder)
    return folder


#: Run in a fresh interpreter: label (JSON and overlay) and print the process's peak resident memory (MiB).
#: VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this benchmark) across exec.
PEAK_CODE = """
import re, sys
if sys.argv[1:]:
    from spinelabel.cli import main
    code = main(sys.argv[1:])
else:
    from spinelabel.pipeline import make_labeler
    make_labeler()
    code = 0
status = open("/proc/self/status").read()
print(code, int(re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1)) / 1024)
"""


def peak_mib(args: list[str]) -> tuple[int, float]:
    """(exit status, peak MiB) of ``spinelabel ARGS`` in a fresh process; no args: import and load the model only."""
    out = subprocess.run([sys.executable, "-c", PEAK_CODE, *args], capture_output=True, text=True, check=True).stdout
    code, mib = out.split()[-2:]
    return int(code), float(mib)


def memory_table(scan: Path, shape: tuple[int, int, int]) -> tuple[str, float]:
    """The memory line (integer series with slope 1, and the same with a fractional slope); the integer peak."""
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        _, baseline = peak_mib([])
        for integer in (True, False):
            series = large_series(scan, shape, Path(tmp) / f"series-{integer}", integer)
            peaks[integer] = peak_mib(["label", str(series), "-o", f"{tmp}/out.json", "--overlay", f"{tmp}/out.png", "-q"])
    size = shape[0] * shape[1] * shape[2] * 4 / 2**20
    line = (
        f"Peak memory of `spinelabel label` (JSON and overlay) on a {' x '.join(map(str, shape))} DICOM series "
        f"(`{scan.parent.name}` resampled; {size:.0f} MiB as float32): **{peaks[True][1]:.0f} MiB** with whole-number "
        f"pixels and RescaleSlope 1, as most MR series are stored (exit status {peaks[True][0]}); "
        f"{peaks[False][1]:.0f} MiB with a fractional RescaleSlope, held as the stored integers and the slope (exit status {peaks[False][0]}); "
        f"the process with torch imported and the model loaded, no image: {baseline:.0f} MiB."
    )
    return line, peaks[True][1]


# --- 4. an archive batch on a 2-worker Dask LocalCluster, killed and resumed ---------------------------


def archive_items(scans: list[Path], n_items: int, n_bad: int, folder: Path) -> tuple[Path, set[str], set[str]]:
    """A manifest of ``n_items``: links to shared scans, and ``n_bad`` bad ones (missing, corrupt, axial).

    Returns
    -------
    manifest : Path
    good, bad : set of str
        The item ids.
    """
    import nibabel as nib
    import numpy as np

    folder.mkdir(parents=True)
    rows, good, bad = [], set(), set()
    for i in range(n_items - n_bad):
        link = folder / f"item{i:04d}.nii.gz"
        link.symlink_to(scans[i % len(scans)])
        rows.append((f"item{i:04d}", str(link)))
        good.add(f"item{i:04d}")
    for j in range(n_bad):
        path = folder / f"bad{j:02d}.nii.gz"
        if j % 3 == 1:
            path.write_bytes(b"\x1f\x8b\x08 not a gzip stream")
        elif j % 3 == 2:
            axial = np.random.default_rng(j).random((100, 100, 12)).astype(np.float32)
            nib.save(nib.Nifti1Image(axial, np.diag([0.8, 0.8, 4.0, 1.0])), str(path))
        rows.append((f"bad{j:02d}", str(path)))  # j % 3 == 0: a path that does not exist
        bad.add(f"bad{j:02d}")
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("id", "input"), *rows])
    return manifest, good, bad


def _run_until(cmd: list[str], done_file: Path, kill_after: int) -> float:
    """Run ``cmd``; SIGKILL it once ``done_file`` has ``kill_after`` lines (or let it finish). Wall seconds."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        if done_file.is_file() and done_file.read_text().count("\n") >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    return time.perf_counter() - t


#: Seconds to wait for the LocalCluster's workers to stop.
CLUSTER_CLOSE_S = 60


def archive_run(scans: list[Path], sizes: Sizes, tmp: Path, options: tuple[str, ...] = ()) -> dict:
    """``spinelabel batch [options]`` on a 2-worker LocalCluster: a run killed after ``kill_after`` items, then
    resumed."""
    from distributed import LocalCluster

    from spinelabel.archive import read_done, read_failed

    manifest, good, bad = archive_items(scans, sizes.archive_items, sizes.archive_bad, tmp / "items")
    out = tmp / "out"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        cmd = [str(EXE), "batch", str(manifest), "-o", str(out), "--scheduler", cluster.scheduler_address, "-q", *options]
        killed_s = _run_until(cmd, out / "done.txt", sizes.kill_after)
        done_at_kill = read_done(out)
        t = time.perf_counter()
        resumed = subprocess.run(cmd, capture_output=True, text=True)
        resumed_s = time.perf_counter() - t
    finally:
        try:
            cluster.close(timeout=CLUSTER_CLOSE_S)
        except TimeoutError:  # workers slow to stop on a loaded machine: they are killed, the results are on disk
            pass
    lines = [ln for ln in (out / "done.txt").read_text().splitlines() if ln]
    done, failed = read_done(out), read_failed(out)
    redone = len(lines) - len(set(lines))
    processed = len(good - done_at_kill) + len(bad)
    return {
        "items": sizes.archive_items, "bad": len(bad), "killed_s": killed_s, "done_at_kill": len(done_at_kill),
        "resumed_s": resumed_s, "resumed_exit": resumed.returncode, "all_good": done == good,
        "bad_listed": set(failed) == bad, "redone": redone, "per_minute": 60.0 * processed / resumed_s,
        "reasons": sorted({re.sub(r"\S*/\S*", "PATH", r) for _, r in failed.values()}),
    }


def archive_table(r: dict, trusted: dict) -> str:
    """The archive runs side by side: ``r`` as by default, ``trusted`` with ``TRUST``."""
    def row(name: str, cell) -> str:
        return f"| {name} | {cell(r)} | {cell(trusted)} |"

    reasons = "; ".join(sorted(set(r["reasons"]) | set(trusted["reasons"])))
    return "\n".join([
        f"`spinelabel batch` over {r['items']} manifest items ({r['bad']} bad: missing, corrupt, axial) on a 2-worker "
        "Dask LocalCluster (`--scheduler`), killed with SIGKILL once and run again:",
        "",
        f"| | default (upside-down check) | `{TRUST}` |",
        "|---|---|---|",
        row("first run, killed after", lambda x: f"{x['done_at_kill']} items done, {x['killed_s']:.1f} s"),
        row("resumed run", lambda x: f"{x['resumed_s']:.1f} s, exit status {x['resumed_exit']} (1: some items failed)"),
        row("resumed run, items per minute (cluster warm)", lambda x: f"{x['per_minute']:.1f}"),
        row("all good items labeled / bad ones listed in failed.csv", lambda x: f"{x['all_good']} / {x['bad_listed']}"),
        row("items labeled twice (done.txt)", lambda x: f"{x['redone']}"),
        f"| failure reasons | {reasons} | |",
    ])


# --- the run --------------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: a few scans, a smaller series, 20 items")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    ap.add_argument("--only", choices=["memory"], help="measure only this part and replace its line in the results file")
    ap.add_argument("--commit", help="commit to write into the results (default: from git)")
    return ap.parse_args(argv)


#: How the memory part's line in the throughput section begins (``--only memory`` replaces that line).
MEMORY_LINE_START = "Peak memory of `spinelabel label`"


def update_memory_line(results: Path, memory_md: str, cmd: str, commit: str) -> None:
    """Replace the memory line of the throughput section with a new measurement, its command, date and commit."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    line = f"{memory_md} Measured alone: `{cmd}`, {stamp}, commit `{commit}`."
    text = results.read_text()
    lines = text.splitlines()
    found = [i for i, ln in enumerate(lines) if ln.startswith(MEMORY_LINE_START)]
    if len(found) != 1:
        raise SystemExit(f"{results}: expected one line starting with {MEMORY_LINE_START!r}, found {len(found)}")
    lines[found[0]] = line
    results.write_text("\n".join(lines) + ("\n" if text.endswith("\n") else ""))


def memory_only(args: argparse.Namespace, cmd: str) -> int:
    """``--only memory``: the peak-memory measurement alone, written over its line of the results file."""
    sizes = QUICK if args.quick else Sizes()
    memory_md, _ = memory_table(lumbar_scans(1)[0], sizes.large_shape)
    print(memory_md, flush=True)
    if args.quick:
        return 0  # a smoke run: the file keeps its measurement
    update_memory_line(args.results, memory_md, cmd, args.commit or git_commit())
    print(f"wrote {args.results}")
    return 0


def _without_commit(args: list[str]) -> list[str]:
    """The command line as run, less ``--commit VALUE`` / ``--commit=VALUE`` (the commit is written on its own)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--commit":
            skip = True
        elif not a.startswith("--commit="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cmd = "python -m benchmarks.throughput" + "".join(f" {a}" for a in _without_commit(argv if argv is not None else sys.argv[1:]))
    if args.only == "memory":
        return memory_only(args, cmd)
    sizes = QUICK if args.quick else Sizes()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: as `spinelabel` runs
    from spinelabel.threads import thread_count

    scans = lumbar_scans(max(sizes.batch, sizes.forward_lumbar))
    batch_md, _ = batch_table(scans[: sizes.batch])
    print(batch_md, flush=True)
    forward = [compare_forward("lumbar", scans[: sizes.forward_lumbar])]
    forward.append(compare_forward("cervical", cervical_scans()[: 1 if args.quick else None]))
    forward_md = forward_table(forward, thread_count())
    print(forward_md, flush=True)
    memory_md, _ = memory_table(scans[0], sizes.large_shape)
    print(memory_md, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [archive_run(lumbar_scans(67), sizes, Path(tmp) / name, options)
                for name, options in (("default", ()), ("trusted", (TRUST,)))]
        archive_md = archive_table(*runs)
    print(archive_md, flush=True)
    body = f"""## Throughput: batches, thread policy under load, forward pass, memory, archive runs (issue 15)

- command: `{cmd}`{' (**quick mode: a smoke run of the script, not the measurement**)' if args.quick else ''}
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{args.commit or git_commit()}`
- machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}

{batch_md}

{forward_md}

{memory_md}

{archive_md}
"""
    write_section(args.results, "throughput", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
