"""Command line: ``spinelabel train`` (a detection model from point annotations; see :mod:`spinelabel.training`).

Registered on the main app in :mod:`spinelabel.cli`, whose ``main`` turns
every :class:`~spinelabel.errors.SpinelabelError` into one line and exit
status 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from .cli_common import check_region, echo, warn
from .errors import InputError
from .threads import MAX_REQUESTED_THREADS

__all__ = [
    "FINE_TUNE", "FROM_SCRATCH", "MAX_SEED", "MAX_SYNTHETIC_SCANS", "MAX_TRAIN_STEPS", "Recipe", "recipe",
    "region_checkers", "train",
]


#: Most optimisation steps ``train`` takes: 250 times the shipped recipe, days on a CPU (a typo is one line).
MAX_TRAIN_STEPS = 1_000_000
#: Most phantoms ``--synthetic-scans`` draws: almost four times the shipped recipes' 80. They are all drawn and held
#: before the first step, 2-62 MB each (six drawn here took 10 s: docs/NOTES.md, forty-fourth session), so 300 stay
#: under about 19 GB at worst; without a bound a typo of two billion ran out of memory instead of a refusal.
MAX_SYNTHETIC_SCANS = 300
#: Largest seed: torch.manual_seed takes a signed 64-bit integer.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Recipe:
    """The optimisation settings ``train`` takes where the command line leaves them out."""

    steps: int
    learning_rate: float
    synthetic_fraction: float


#: From a random network: ``training.train.TrainSettings``' own defaults (chosen in the first sessions, not tuned).
FROM_SCRATCH = Recipe(steps=4000, learning_rate=2e-3, synthetic_fraction=0.0)
#: With ``--init``: the fine-tune measured on a hospital's own reviewed scans (``benchmarks.site_adaptation``,
#: docs/training.md, "Fine-tuning on a hospital's own scans"): 1000 steps at a quarter of the learning rate from
#: scratch, a quarter of the crops from phantoms, which keep the levels and appearances that a handful of one
#: hospital's scans lack. The scratch defaults were never measured as a fine-tune: four times the steps at four
#: times the rate, from a model already trained.
FINE_TUNE = Recipe(steps=1000, learning_rate=5e-4, synthetic_fraction=0.25)


def recipe(init: str | None, steps: int | None, learning_rate: float | None, synthetic_fraction: float | None) -> Recipe:
    """The settings of one run: those given (not None), the others from :data:`FINE_TUNE` with ``--init``, else
    from :data:`FROM_SCRATCH`."""
    base = FROM_SCRATCH if init is None else FINE_TUNE
    return Recipe(
        steps=base.steps if steps is None else steps,
        learning_rate=base.learning_rate if learning_rate is None else learning_rate,
        synthetic_fraction=base.synthetic_fraction if synthetic_fraction is None else synthetic_fraction,
    )


def train(
    annotations: list[Path] = typer.Argument(..., readable=False, help="centroids.json files, folders of them, a CSV scan,label,x,y,z[,image][,series][,frame], or DICOM folders with GSPS/SR labels."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    region: str = typer.Option("lumbar", help="Region the model labels."),
    steps: Optional[int] = typer.Option(None, min=1, max=MAX_TRAIN_STEPS, show_default=f"{FROM_SCRATCH.steps}; {FINE_TUNE.steps} with --init", help="Optimisation steps (batch of 16 crops each)."),
    exclude: Optional[Path] = typer.Option(None, help="JSON split file: scans in its 'validation' list are not used."),
    synthetic_fraction: Optional[float] = typer.Option(None, min=0.0, max=1.0, show_default=f"{FROM_SCRATCH.synthetic_fraction}; {FINE_TUNE.synthetic_fraction} with --init", help="Share of training crops from synthetic phantoms (teaches levels the annotations lack, e.g. S1)."),
    synthetic_scans: int = typer.Option(80, min=1, max=MAX_SYNTHETIC_SCANS, help="Number of phantoms drawn for --synthetic-fraction."),
    region_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of training crops from the real scans whose labels lie in --region (e.g. a few real cervical scans among many lumbar ones); 0: all real scans equally."),
    init: Optional[str] = typer.Option(None, help="Fine-tune: start from this model's weights (shipped region name or model directory) instead of a random network; --steps, --learning-rate and --synthetic-fraction then default to the fine-tune measured on a hospital's own reviewed scans (docs/training.md)."),
    learning_rate: Optional[float] = typer.Option(None, min=1e-6, max=1.0, show_default=f"{FROM_SCRATCH.learning_rate}; {FINE_TUNE.learning_rate} with --init", help="Peak learning rate (one-cycle schedule)."),
    clean: bool = typer.Option(True, "--clean/--no-clean", help="Check the labels first and train only on the cleaned set (see 'annotations check')."),
    extra_labels: list[Path] = typer.Option([], "--extra-labels", help="Annotation file(s) whose points are added to the scans of the same id (levels the annotations lack, e.g. annotations/lumbar-s1.csv); repeatable."),
    complete_anchors: bool = typer.Option(False, "--complete-anchors/--no-complete-anchors", help="Add the anchor where a scan's labels stop short of it (S1 below L5, C2 above C3), found by the detector of the shipped model for the region the labels cover (pseudo-labels)."),
    threads: int = typer.Option(2, min=1, max=MAX_REQUESTED_THREADS, help="Intra-op threads of the optimisation (use 1 per run when several trainings share the cores)."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Random seed of the initial network, the phantoms and the crops: another seed, another run of the same recipe (run-to-run spread)."),
    device: str = typer.Option("cpu", help="Torch device of the optimisation: cpu, or cuda (cuda:N) where PyTorch sees a GPU; crops are drawn on the CPU either way."),
    precision: str = typer.Option("fp32", help="Arithmetic of the network's passes: fp32, or bf16 (bfloat16 autocast; about 1.7 times as fast on CPUs with AMX, slower where bfloat16 is emulated; see docs/training.md). Weights stay float32."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary output."),
) -> None:
    """Train a detection model from point annotations (clinical spine labels)."""
    region = check_region(region, auto=False)  # "auto" chooses a model when labeling; a model has one region
    run = recipe(init, steps, learning_rate, synthetic_fraction)
    _check_train_options(out, init, (run.synthetic_fraction, region_fraction), device, precision)
    from .training.data import check_region_covered, load_training_scans
    from .training.train import TrainSettings, train_and_save

    finders = None
    if complete_anchors:  # one per region of the labels: lumbar labels get S1, cervical ones C2
        from .pipeline import AutoLabeler

        finders = AutoLabeler.load().by_region  # the shipped models, each loaded once
    data: dict[str, Any] = {  # what the model was trained on, kept in its config
        "annotations": [str(a) for a in annotations], "extra_labels": [str(e) for e in extra_labels],
        "exclude": None if exclude is None else str(exclude), "clean": clean,
    }
    with _training_sources(annotations, exclude, region, clean, quiet, extra_labels, data) as sources:
        scans, points = load_training_scans(
            sources, exclude=exclude, anchor_finders=finders, on_message=None if quiet else lambda m: echo(m, err=True)
        )
    check_region_covered(points, region)
    if complete_anchors:
        pseudo = sum(bool(s.pseudo_levels) for s in scans)
        echo(f"anchor pseudo-labels added in {pseudo} of {len(scans)} scans", quiet)
    echo(f"training on {len(scans)} scans: {_describe(run, init)}", quiet)
    settings = TrainSettings(
        steps=run.steps, synthetic_fraction=run.synthetic_fraction, synthetic_scans=synthetic_scans,
        region_fraction=region_fraction, init=init, learning_rate=run.learning_rate, threads=threads, seed=seed,
        device=device, precision=precision,
    )
    path = _train_with_progress(lambda progress: train_and_save(
        scans, points, region, out, settings, progress=progress, data=data), run.steps, quiet)
    echo(f"model written to {path}", quiet)


def _describe(run: Recipe, init: str | None) -> str:
    """``1000 steps, learning rate 0.0005, 25% of the crops from phantoms (a fine-tune of lumbar)``."""
    start = "from a random network" if init is None else f"a fine-tune of {init}"
    return (f"{run.steps} steps, learning rate {run.learning_rate:g}, {run.synthetic_fraction:.0%} of the crops from "
            f"phantoms ({start})")


def _train_with_progress(run: Callable[[Callable[[int, float], None]], Path], steps: int, quiet: bool) -> Path:
    """``run(progress)`` under a progress bar of ``steps`` steps, closed before any error line is printed."""
    from tqdm import tqdm

    bar = tqdm(total=steps, desc="training", unit="step", disable=quiet, file=sys.stderr)

    def progress(step: int, loss: float) -> None:
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    try:
        return run(progress)
    finally:
        bar.close()  # its line ends before any error line


def _check_train_options(
    out: Path, init: str | None, crop_shares: tuple[float, float], device: str = "cpu", precision: str = "fp32"
) -> None:
    """What can be refused in one line before hours of training: shares over 1, a device that is not here, an
    unknown precision, an unwritable --out or one holding other files than a model, an --init model that cannot be
    loaded."""
    from .training.train import PRECISIONS

    synthetic, region = crop_shares  # (--synthetic-fraction, --region-fraction) as the run takes them
    if synthetic + region > 1.0:
        raise InputError(f"--synthetic-fraction ({synthetic:g}) plus --region-fraction ({region:g}) must not exceed 1")
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: use {' or '.join(PRECISIONS)}")
    _check_device(device)
    if precision == "bf16" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            raise InputError(f"--precision bf16: the GPU of --device {device} has no bfloat16 (use --precision fp32)")
    from .io.outputs import check_writable_folder
    from .models import is_model_dir

    check_writable_folder(out)  # an empty --out is "." to typer: a folder of other files, refused below
    if out.is_dir() and any(out.iterdir()) and not is_model_dir(out):
        raise InputError(f"--out {out} holds other files and no spinelabel model: name a new or a model folder")
    if init is not None:
        from .pipeline import Labeler

        # a corrupt model, or a config whose shape model the fine-tune keeps (train.model_config) is unusable:
        # one line now, not a traceback after hours of training
        Labeler.load(init)


def _check_device(device: str) -> None:
    """Refuse a --device that PyTorch does not know or cannot reach here, in one line."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device}: not a PyTorch device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise InputError(f"--device {device}: PyTorch sees no such device here (train with --device cpu)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: PyTorch sees {torch.cuda.device_count()} GPU(s) here")


@contextmanager
def _training_sources(
    sources: list[Path], exclude: Path | None, region: str, clean: bool, quiet: bool, extra: Sequence[Path] = (),
    record: dict[str, Any] | None = None,
):
    """The annotation sources to train on: as given, or extended and cleaned into a temporary CSV.

    ``extra`` label files are added to the scans of the same id
    (:func:`spinelabel.annotations.add_labels`). Cleaning runs the geometric
    checks, the orientation check on each image, and the detector checks with
    the region's shipped model when there is one; the ids of the scans it
    drops go into ``record["dropped_by_cleaning"]``.
    """
    if not clean and not extra:
        yield sources
        return
    import tempfile

    from .annotations import add_labels, load_annotations, save_annotations_csv
    from .training.data import validation_ids

    skip = validation_ids(exclude)
    on_problem = None if quiet else warn
    anns = [a for a in load_annotations(sources, on_problem) if a.scan_id not in skip]
    if extra:
        anns, n = add_labels(anns, load_annotations(list(extra), on_problem))
        echo(f"extra labels: points added to {n} of {len(anns)} scans", quiet, err=True)
    if clean:
        kept = _cleaned(anns, region, quiet)
        if record is not None:
            record["dropped_by_cleaning"] = sorted({a.scan_id for a in anns} - {a.scan_id for a in kept})
        anns = kept
    with tempfile.TemporaryDirectory(prefix="spinelabel-clean-") as tmp:
        cleaned = Path(tmp) / "cleaned.csv"
        save_annotations_csv(anns, cleaned)
        yield [cleaned]


def region_checkers(region: str) -> tuple[Any, Any]:
    """The labeler of a shipped region and the per-scan choice of checking labeler (``check_annotations``).

    The region's shipped model gives the shape model; each scan's image is
    checked by the shipped model of the region its labels show
    (``pipeline.checking_region``: a lumbar scan in a cervical set by the
    lumbar model, not by a cervical chain laid over a lumbar spine). (None,
    None) when ``region`` has no shipped model.
    """
    from .pipeline import SHIPPED_MODEL, checking_region, make_labeler

    if region not in SHIPPED_MODEL:
        return None, None

    labeler_of = functools.cache(make_labeler)  # each shipped model loaded once

    return labeler_of(region), lambda ann: labeler_of(checking_region(ann.points, region))


def _cleaned(anns: list, region: str, quiet: bool) -> list:
    """The annotations that pass the checks of `annotations check` (findings echoed).

    Without a shipped model for ``region``: the prior spacings and no detector checks.
    """
    from .cleaning_evidence import check_annotations
    from .cleaning_report import summary_lines

    labeler, labeler_for = region_checkers(region)
    report = check_annotations(anns, model=None, labeler=labeler, labeler_for=labeler_for)
    for line in summary_lines(report):
        echo(f"cleaning: {line}", quiet, err=True)
    if not report.cleaned:
        raise InputError("no scans left after cleaning the labels (findings above; --no-clean trains on every label)")
    return list(report.cleaned)
