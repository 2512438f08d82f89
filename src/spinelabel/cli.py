"""Command line: ``spinelabel label | train | evaluate | evaluate-model | synth | demo | annotations ...``.

Heavy libraries (torch, pydicom, nibabel) are imported inside the commands so
``spinelabel --help`` starts fast. Every expected problem is a SpinelabelError,
printed as one line ``spinelabel: error: ...`` with exit status 1; usage errors
exit with 2.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click
import typer

from .cli_common import OPT_TRUST_ORIENTATION, check_region, echo, warn
from .cli_pacs import (
    OPT_CA_BUNDLE,
    OPT_DATE,
    OPT_INSECURE,
    OPT_LIMIT,
    OPT_PASSWORD,
    OPT_PATIENT_ID,
    OPT_RETRIEVE_TIMEOUT,
    OPT_STACK,
    OPT_STUDY,
    OPT_TIMEOUT,
    OPT_URL,
    OPT_USER,
    pacs_app,
    server_config,
    study_filters,
)
from .cli_review import review as _review_command
from .cli_train import region_checkers, train
from .errors import InputError, SpinelabelError, one_line
from .threads import passive_openmp

if TYPE_CHECKING:
    from .carried_count import CountingSeries

#: Help as plain text (click's), not rich tables: the tables cut long option names at 80 columns
#: (``--synthetic-fr…``) and show flags as taking a value (``--overlays <bool>``).
HELP_MARKUP = None
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=HELP_MARKUP,
                  help="Find and name the vertebrae in sagittal spine MR.")

EXIT_ERROR = 1


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"spinelabel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Find and name the vertebrae in sagittal spine MR."""


def _label_one(
    labeler, inputs: list[Path], series: str | None, out_json: Path | None, overlay: Path | None,
    dicom_sr: Path | None = None, gsps: Path | None = None, stack: str | None = None, label_map: Path | None = None,
    counting: "CountingSeries | None" = None,
):
    from .pipeline import label_to_files

    return label_to_files(labeler, inputs, series, out_json, overlay, dicom_sr, gsps, stack, label_map=label_map,
                          counting=counting)


def _doubt_line(n: int, labeled: int) -> str:
    """The batch summary's line on results whose count a warning doubts."""
    return (f"{n} of the {labeled} labeled carry a warning that the level count may be off (a `count` code in "
            "their warning_codes): check those first")


def _summary_line(result) -> str:
    """``N vertebrae: L1(0.98) ...``, ending in "check the count" when a warning doubts it."""
    from .warning_codes import count_note

    labels = " ".join(f"{v.label}({v.confidence:.2f})" for v in result.vertebrae)
    return f"{len(result.vertebrae)} vertebrae: {labels}{count_note(result.warnings)}"


@app.command()
def label(
    inputs: list[Path] = typer.Argument(..., readable=False, help="NIfTI file, DICOM folder, or DICOM files (one image); with --output-dir, one scan per input."),
    region: str = typer.Option("lumbar", help="lumbar, cervical, whole, or auto (decided from the image)."),
    model: Optional[str] = typer.Option(None, help="Model directory (default: the shipped model of the region)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Result JSON (single image)."),
    overlay: Optional[Path] = typer.Option(None, help="Overlay PNG (single image)."),
    output_dir: Optional[Path] = typer.Option(None, help="Batch mode: write NAME.json (and NAME.png with --overlays) per input."),
    overlays: bool = typer.Option(False, "--overlays", help="Batch mode: also write overlay PNGs."),
    series: Optional[str] = typer.Option(None, help="SeriesInstanceUID to use when a folder holds several series (without it, the only sagittal one)."),
    stack: Optional[str] = OPT_STACK,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary output."),
    dicom_sr: Optional[Path] = typer.Option(None, "--dicom-sr", help="DICOM SR (TID 1500) with the labels, for PACS (DICOM input)."),
    gsps: Optional[Path] = typer.Option(None, "--gsps", help="DICOM presentation state (GSPS) showing the labels on the images (DICOM input)."),
    dicom_outputs: bool = typer.Option(False, "--dicom-outputs", help="Batch mode: also write NAME.sr.dcm and NAME.gsps.dcm (DICOM inputs)."),
    label_map: Optional[Path] = typer.Option(None, "--label-map", help="NIfTI point labels on the input's grid: each vertebra's VerSe number (C1=1 ... L5=24, S1=26) at its centre voxel (single image)."),
    label_maps: bool = typer.Option(False, "--label-maps", help="Batch mode: also write NAME.labels.nii.gz."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Batch mode: worker processes, each with its own model and one thread (1: this process)."),
    trust_orientation: bool = OPT_TRUST_ORIENTATION,
    count_from: Optional[list[Path]] = typer.Option(None, "--count-from", readable=False, help="Another sagittal series of the patient in the same frame of reference (NIfTI file or DICOM folder) whose count is sure, from its C2 (e.g. a whole-spine series) or its S1 (e.g. the study's lumbar T2 series): its names are carried over by position (single image). Give it again for a chain of stations, the anchor's first: each is counted from the one before."),
    count_from_series: Optional[list[str]] = typer.Option(None, "--count-from-series", help="SeriesInstanceUID to read from --count-from when it holds several series (once per link of a chain, an empty value for none; once for every link of one folder)."),
    count_from_stack: Optional[list[str]] = typer.Option(None, "--count-from-stack", help="The stack to read of a --count-from series holding several (as --stack; once for every link, or once per link, an empty value for none)."),
) -> None:
    """Detect and label the vertebrae of one or more sagittal MR images."""
    region = check_region(region)
    _check_label_mode(output_dir is not None, {"--output": output, "--overlay": overlay, "--dicom-sr": dicom_sr,
                      "--gsps": gsps, "--label-map": label_map, "--count-from": count_from or None},
                      {"--overlays": overlays, "--dicom-outputs": dicom_outputs, "--label-maps": label_maps, "--jobs": jobs > 1})
    links = _counting_links(count_from or [], count_from_series or [], count_from_stack or [])
    if output_dir is None:
        from .io.outputs import check_scan_outputs
        from .pipeline import make_labeler, read_counting_chain

        labeler = make_labeler(region, model, check_orientation=not trust_orientation)
        counting = None
        if links:  # the model and output names refused before the counting series' network pass
            check_scan_outputs(output, overlay, dicom_sr, gsps, label_map, [p for p, _, _ in links if p.is_file()])
            counting = read_counting_chain(links, check_orientation=not trust_orientation)
        result = _label_one(labeler, inputs, series, output, overlay, dicom_sr, gsps, stack, label_map, counting)
        echo(_summary_line(result), quiet)
        for w in result.warnings:
            echo(f"warning: {w.line()}", quiet, err=True)
        if all(p is None for p in (output, overlay, dicom_sr, gsps, label_map)):
            echo("nothing written: give -o NAME.json (or --overlay, --label-map) to keep the result", quiet, err=True)
        return
    from .batch import LabelerSpec

    spec = LabelerSpec(region, model, check_orientation=not trust_orientation)
    _label_batch(spec, inputs, series, output_dir, overlays, quiet, dicom_outputs, jobs, stack, label_maps)


def _counting_links(
    paths: list[Path], series: list[str], stacks: list[str],
) -> list[tuple[Path, str | None, str | None]]:
    """(input, series, stack) of each counting series of ``label --count-from``, the one naming the anchor first.

    Each option is given once (it holds for every link) or once per link, an
    empty value for none; a chain is as long as the longest of them
    (``--count-from study/ --count-from-series A --count-from-series B``: two
    series of one folder). A SeriesInstanceUID names one series, so one
    ``--count-from-series`` holds for several links only of one folder.
    """
    if not paths and (series or stacks):
        raise click.UsageError("--count-from-series and --count-from-stack pick what is read of --count-from: "
                               "give --count-from too")
    n = max(len(paths), len(series), len(stacks))
    for option, values in (("--count-from", paths), ("--count-from-series", series), ("--count-from-stack", stacks)):
        if len(values) not in (0, 1, n):
            raise click.UsageError(f"{option} is given {len(values)} times for a chain of {n} counting series: give it "
                                   "once (for every link) or once per link")
    if len(series) == 1 and n > 1 and len(set(paths)) > 1:
        raise click.UsageError("--count-from-series names one series: give it once per --count-from (an empty value "
                               "for a link that needs none)")

    def at(values: list, k: int):
        value = values[0] if len(values) == 1 else values[k] if values else None
        return value or None

    return [(at(paths, k), at(series, k), at(stacks, k)) for k in range(n)]


def _check_label_mode(batch: bool, single_outputs: dict[str, object], batch_options: dict[str, object]) -> None:
    """A usage error for an option of the other mode: one image's output names with ``--output-dir``, or a batch
    option without it (either would otherwise be passed over without a word, and its outputs never written)."""
    if batch:
        given = [name for name, value in single_outputs.items() if value is not None]
        if given:
            raise click.UsageError(f"{given[0]} applies to a single image, not to the batch of --output-dir (there "
                                   "each scan's outputs are named after it: --overlays, --dicom-outputs, --label-maps)")
    else:
        given = [name for name, value in batch_options.items() if value]
        if given:
            raise click.UsageError(f"{given[0]} is an option of batch mode: give --output-dir too")


def _batch_tasks(
    inputs: list[Path], series, output_dir: Path, overlays: bool, dicom_outputs: bool, stack: str | None = None,
    label_maps: bool = False,
) -> list:
    """One ``batch.Task`` per input, in order, keyed by its output name (``output_names.unique_names``).

    A name gets a "_" while it is taken: by an earlier input, by another
    input's result in ``output_dir``, or because one of its outputs would be a
    file of the batch's inputs (``x.nii.gz`` and ``x.labels.nii.gz`` labeled
    with ``--label-maps`` into their own folder). What only a DICOM series has
    (``series``, ``stack``, the SR and GSPS) is left out of a NIfTI file's task,
    so that a batch mixing both labels each.
    """
    from .batch import Task
    from .io.nifti import is_nifti_file
    from .output_names import unique_names

    def task(name: str, inp: Path) -> Task:
        out, dicom = output_dir / name, not is_nifti_file(inp)
        return Task(
            name, (str(inp),), series if dicom else None, Path(f"{out}.json"), Path(f"{out}.png") if overlays else None,
            Path(f"{out}.sr.dcm") if dicom_outputs and dicom else None,
            Path(f"{out}.gsps.dcm") if dicom_outputs and dicom else None,
            stack=stack if dicom else None, label_map=Path(f"{out}.labels.nii.gz") if label_maps else None,
        )

    inputs_read = {p.resolve() for p in inputs if os.path.isfile(p)}  # False, not an error, for a name too long
    names = unique_names(inputs, output_dir, lambda name, inp: any(p.resolve() in inputs_read for p in task(name, inp).outputs()))
    return [task(name, inp) for name, inp in zip(names, inputs)]


def _check_dicom_options(inputs: list[Path], options: dict[str, object]) -> None:
    """InputError for an option of DICOM series given to a batch of NIfTI files only (a mixed batch gives it to
    its DICOM series, ``_batch_tasks``; with none it would be passed over without a word)."""
    from .io.nifti import is_nifti_file

    given = [name for name, value in options.items() if value]
    if given and all(is_nifti_file(p) for p in inputs):
        raise InputError(f"{given[0]} applies to DICOM series, and every input is a NIfTI file")


def _label_batch(
    spec, inputs: list[Path], series, output_dir: Path, overlays: bool, quiet: bool,
    dicom_outputs: bool = False, jobs: int = 1, stack: str | None = None, label_maps: bool = False,
) -> None:
    """Label each input into ``output_dir`` with the labeler of ``spec`` (``batch.LabelerSpec``); ``jobs`` > 1: in
    that many worker processes (one thread each)."""
    from dataclasses import replace

    from tqdm import tqdm

    from .batch import check_jobs, run_here, run_processes
    from .io.outputs import check_writable_folder

    check_jobs(min(jobs, len(inputs)))  # more workers than memory holds: one line, not a machine that swaps
    check_writable_folder(output_dir)  # one line before any labeling, not one failure per scan after it
    _check_dicom_options(inputs, {"--series": series, "--stack": stack, "--dicom-outputs": dicom_outputs})
    tasks = _batch_tasks(inputs, series, output_dir, overlays, dicom_outputs, stack, label_maps)
    if jobs > 1:
        if spec.model is not None:
            from .models import resolve_model_dir

            resolve_model_dir(spec.model)  # a missing model is one line before any worker starts
        outcomes = run_processes(spec, tasks, min(jobs, len(tasks)))
    else:
        outcomes = run_here(replace(spec, threads=None).load(), tasks)
    done = {o.key: o for o in tqdm(outcomes, total=len(tasks), desc="labeling", unit="scan", disable=quiet, file=sys.stderr)}
    failures = [(inp, done[t.key].error) for inp, t in zip(inputs, tasks) if t.key in done and not done[t.key].ok]
    echo(f"labeled {len(inputs) - len(failures)} of {len(inputs)} scans into {output_dir}", quiet)
    in_doubt = sum(o.count_in_doubt for o in done.values())
    if in_doubt:
        echo(_doubt_line(in_doubt, len(inputs) - len(failures)), quiet)
    for inp, msg in failures:
        typer.echo(f"failed: {inp}: {msg}", err=True)
    if failures:
        raise typer.Exit(EXIT_ERROR)


def _check_model_option(model: str | None) -> None:
    """An empty or missing ``--model`` is one line before any worker starts or any folder is made."""
    if model is None:
        return
    from .models import resolve_model_dir
    from .pipeline import check_model_name

    check_model_name(model)
    resolve_model_dir(model)


@app.command()
def batch(
    manifest: Optional[Path] = typer.Argument(None, readable=False, help="CSV with a header (input[,id][,series]), JSON lines {\"input\": ..., \"id\": ..., \"series\": ...} or harvest.json; without it, the sagittal MR series of the studies a DICOMweb server finds (--url, study filters)."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="labels/<id>.json per item, done.txt, failed.csv; re-run to resume."),
    region: str = typer.Option("lumbar", help="lumbar, cervical, whole, or auto (decided per image)."),
    model: Optional[str] = typer.Option(None, help="Model directory (default: the shipped model of the region)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Local worker processes, one model and one thread each (without --scheduler)."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (tcp://host:8786): label on that cluster instead."),
    overlays: bool = typer.Option(False, "--overlays", help="Also write labels/<id>.png."),
    skip_failed: bool = typer.Option(False, "--skip-failed", help="Do not retry the items listed in failed.csv."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    store: bool = typer.Option(False, "--store", help="DICOMweb batch: also write labels/<id>.sr.dcm and .gsps.dcm and store them back on the server (STOW-RS)."),
    stack: Optional[str] = OPT_STACK,
    patient_id: Optional[str] = OPT_PATIENT_ID, date: Optional[str] = OPT_DATE,
    study: Optional[list[str]] = OPT_STUDY, limit: Optional[int] = OPT_LIMIT,
    url: Optional[str] = OPT_URL, user: Optional[str] = OPT_USER, password: Optional[str] = OPT_PASSWORD,
    ca_bundle: Optional[Path] = OPT_CA_BUNDLE, insecure: bool = OPT_INSECURE, timeout: Optional[float] = OPT_TIMEOUT,
    retrieve_timeout: Optional[float] = OPT_RETRIEVE_TIMEOUT,
    trust_orientation: bool = OPT_TRUST_ORIENTATION,
) -> None:
    """Label the series of a manifest or of a DICOMweb query, resumably: finished items are skipped when run again."""
    from contextlib import nullcontext

    from tqdm import tqdm

    from .archive import FAILED_NAME, WORKLIST_NAME, make_runner, prepare_output, run_archive
    from .batch import LabelerSpec, check_jobs

    region = check_region(region)
    if scheduler is None:
        check_jobs(jobs)  # more workers than memory holds: one line, not a machine that swaps
    server = {"url": url, "user": user, "password": password, "ca_bundle": ca_bundle, "insecure": insecure,
              "timeout": timeout, "retrieve_timeout": retrieve_timeout}
    items = _batch_items(manifest, server, {"patient_id": patient_id, "date": date, "study": study, "limit": limit}, store)
    _check_model_option(model)
    prepare_output(output_dir)  # a folder that cannot be written is one line, before any model or worker starts
    with _dask_client(scheduler) if scheduler else nullcontext() as client:
        threads = None if client is None and jobs == 1 else 1
        runner = make_runner(LabelerSpec(region, model, threads, check_orientation=not trust_orientation), jobs, client)
        with tqdm(desc="labeling", unit="item", disable=quiet, file=sys.stderr) as bar:
            run = run_archive(items, output_dir, runner, overlays, skip_failed, lambda _o: bar.update(1), stack)
    done = run.done_before + run.labeled
    echo(
        f"labeled {run.labeled} items" + (f" ({run.items_per_minute:.1f} items/min)" if run.labeled else "")
        + f"; {done} of {run.total} done in {output_dir}"
        + (f", {run.done_before} before this run" if run.done_before else ""), quiet,
    )
    if run.count_in_doubt:
        echo(_doubt_line(run.count_in_doubt, run.labeled), quiet)
    if done:
        echo(f"{output_dir / WORKLIST_NAME}: every item done, what to check first at the top", quiet)
    for key, (inp, reason) in sorted(run.failed.items()):
        typer.echo(f"failed: {key}: {inp}: {reason}", err=True)
    if run.failed:
        echo(f"{len(run.failed)} failed, listed in {output_dir / FAILED_NAME}", quiet, err=True)
        raise typer.Exit(EXIT_ERROR)


def _batch_items(manifest: Path | None, server: dict[str, Any], filters: dict[str, Any], store: bool) -> list:
    """The items of ``spinelabel batch``: the manifest's, or one per sagittal MR series the DICOMweb query finds.

    ``server`` and ``filters`` are the DICOMweb options by parameter name
    (``cli_pacs.server_config``, ``cli_pacs.study_filters``).

    Raises
    ------
    InputError
        A manifest together with a DICOMweb option, or neither a manifest
        nor a server (option or environment).
    """
    from .archive import read_manifest
    from .archive_dicomweb import dicomweb_items
    from .pacs_client import ENV_URL

    given = [f"--{name.replace('_', '-')}" for name, value in {**server, **filters, "store": store}.items() if value]
    if manifest is not None:
        if given:
            raise InputError(f"{given[0]} is an option of a DICOMweb batch: give a manifest file or a DICOMweb server, not both")
        return read_manifest(manifest)
    if server["url"] is None and not os.environ.get(ENV_URL):
        raise InputError(f"give a manifest file, or a DICOMweb server (--url or {ENV_URL}) and study filters")
    return dicomweb_items(server_config(**server), store, **study_filters(**filters))


@contextmanager
def _dask_client(address: str):
    """A ``distributed.Client`` connected to ``address``; InputError (one line) when it cannot be reached."""
    from distributed import Client

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {' '.join(str(exc).split())}") from None
    try:
        yield client
    finally:
        client.close()


#: Largest phantom seed: numpy's seed sequence splits a larger one into 32-bit words, so that seed 2**32 + 7 would
#: give the cases of seed 7 shifted by one.
MAX_SYNTH_SEED = 2**32 - 1
#: Most cases ``synth`` writes: the case names carry four digits (``synth-cervical-0000``), so a ten-thousandth
#: would sort out of order; and every target is checked before the first case is drawn.
MAX_SYNTH_CASES = 10_000


app.command("train")(train)


@app.command()
def evaluate(
    predictions: Path = typer.Argument(..., readable=False, help="Result JSON file or folder of them."),
    annotations: Path = typer.Argument(..., readable=False, help="Ground truth: centroids.json, folder, or CSV."),
    radius: float = typer.Option(20.0, min=0.1, max=1000.0, help="Matching radius in mm."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Compare predictions with annotations: the paper's detection and labeling metrics."""
    import json

    from .annotations import load_annotations
    from .evaluation import evaluate as run_evaluation
    from .evaluation import (
        check_pairs, check_report_target, format_report, load_predictions, report_to_dict, unambiguous_scans,
    )
    from .io.outputs import atomic_write_bytes

    if json_out is not None:
        check_report_target(json_out)  # before reading: the report never replaces what it is computed from
    everything = load_annotations([annotations], on_problem=warn)
    gt, left_out = unambiguous_scans(everything)
    for message in left_out:
        warn(message)
    preds = load_predictions([predictions], {a.series_uid: a.scan_id for a in everything if a.series_uid})
    check_pairs(preds, gt)
    report = run_evaluation(preds, gt, match_radius_mm=radius)
    typer.echo(format_report(report))
    if json_out is not None:
        atomic_write_bytes(json_out, json.dumps(report_to_dict(report), indent=1).encode())


@app.command("evaluate-model")
def evaluate_model(
    annotations: list[Path] = typer.Argument(..., readable=False, help="Named scans the models did not train on, with their images: reviewed results (spinelabel review), centroids.json files or folders, a CSV with an image column, or DICOM folders with GSPS/SR labels."),
    model: Optional[list[str]] = typer.Option(None, "--model", help="A model to score: a shipped region name or a model folder; repeat it to compare models on the same scans (default: the region's shipped model)."),
    region: str = typer.Option("lumbar", help="lumbar, cervical, whole, or auto (shipped models only)."),
    radius: float = typer.Option(20.0, min=0.1, max=1000.0, help="Matching radius in mm."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every model's report as JSON."),
    held_out: Optional[Path] = typer.Option(None, "--held-out", help="JSON split file: score only the scans in its 'validation' list (those 'train --exclude' with the same file left out)."),
    trust_orientation: bool = OPT_TRUST_ORIENTATION,
) -> None:
    """Label named scans with one or more models and score each: e.g. a model fine-tuned on a hospital's reviewed
    scans against the shipped one, on reviewed scans that neither trained on."""
    import json

    from .annotations import load_annotations
    from .evaluation import check_report_target, format_report, unambiguous_scans
    from .io.outputs import atomic_write_bytes
    from .pipeline import check_model_name
    from .scoring import held_out_scans, score_models, scores_to_dict

    region = check_region(region)
    for name in model or []:
        check_model_name(name)
    if json_out is not None:
        check_report_target(json_out)
    gt, left_out = unambiguous_scans(held_out_scans(load_annotations(annotations, on_problem=warn), held_out))
    for message in left_out:
        warn(message)
    scores = score_models(gt, model or [None], region, radius, not trust_orientation, on_problem=warn)
    for score in scores:
        refused = f"; named nothing in {', '.join(score.refused)}" if score.refused else ""
        typer.echo(f"== model {score.model}: {score.report.n_scans_correct} of {score.report.n_scans} scans entirely "
                   f"right{refused}\n{format_report(score.report)}\n")
    if json_out is not None:
        atomic_write_bytes(json_out, json.dumps(scores_to_dict(scores), indent=1).encode())


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write case folders (image.nii.gz + centroids.json) into."),
    region: str = typer.Option("cervical", help="Field of view: lumbar, cervical or whole."),
    n: int = typer.Option(20, "--n", min=1, max=MAX_SYNTH_CASES, help="Number of scans."),
    seed: int = typer.Option(0, min=0, max=MAX_SYNTH_SEED, help="Random seed (case i depends only on seed and i)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary output."),
) -> None:
    """Write synthetic annotated spine MR scans (phantoms with exact labels)."""
    from .synthetic_cases import write_synthetic_cases

    region = check_region(region, auto=False)
    from tqdm import tqdm

    from .io.outputs import check_writable_folder

    check_writable_folder(out)

    with tqdm(total=n, desc="synthesising", unit="scan", disable=quiet, file=sys.stderr) as bar:
        cases = write_synthetic_cases(out, n, region, seed, progress=lambda i: bar.update(1))
    echo(f"wrote {len(cases)} {region} scans to {out}", quiet)


@app.command()
def demo(
    out: Path = typer.Option(Path("spinelabel-demo"), help="Folder for the demo's JSON and overlay."),
) -> None:
    """Label a built-in example and write its JSON and overlay picture."""
    from .demo import run_demo

    for line in run_demo(out):
        typer.echo(line)


annotations_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=HELP_MARKUP, help="Clinical spine labels: import them from DICOM GSPS/SR, check them before training."
)
app.add_typer(annotations_app, name="annotations")
app.add_typer(pacs_app, name="pacs")
app.command("review")(_review_command)


@annotations_app.callback()
def _annotations_group() -> None:
    """Clinical spine labels: import them from DICOM GSPS/SR, check them before training."""


def _require_csv(output: Path) -> None:
    """Annotation output is CSV: refuse another extension rather than write CSV into it."""
    if output.suffix.lower() != ".csv":
        raise click.BadParameter(f"{output}: the labels are written as CSV, so the name must end in .csv", param_hint="--output")


@annotations_app.command("import")
def annotations_import(
    sources: list[Path] = typer.Argument(..., readable=False, help="DICOM files or folders: sagittal series with the GSPS/SR objects that label them."),
    output: Path = typer.Option(..., "--output", "-o", help="CSV to write: scan,label,x,y,z,image,series (what train reads)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary or per-item warnings."),
) -> None:
    """Import spine labels (GSPS text/points, SR coordinates) from DICOM into an annotation CSV."""
    from .annotations import drop_implausible, save_annotations_csv
    from .io.dicom_label_read import import_dicom_annotations

    _require_csv(output)
    imported = import_dicom_annotations(sources)
    annotations, implausible = drop_implausible(imported.annotations)
    problems = [*imported.problems, *implausible]
    for message in problems:
        echo(f"warning: {message}", quiet, err=True)
    if not annotations:
        raise InputError(
            f"no spine labels imported from {imported.n_objects} GSPS/SR object(s) "
            f"({len(problems)} problem(s){' listed above' if not quiet else ''})"
        )
    save_annotations_csv(annotations, output)
    n_labels = sum(len(a.points) for a in annotations)
    skipped = f"; {len(problems)} item(s) skipped" if problems else ""
    echo(f"imported {n_labels} labels of {len(annotations)} scans into {output}{skipped}", quiet)


@annotations_app.command("check")
def annotations_check(
    sources: list[Path] = typer.Argument(..., readable=False, help="Annotations: CSV, centroids.json files/folders, or DICOM folders with GSPS/SR labels."),
    output: Path = typer.Option(..., "--output", "-o", help="CSV to write with the cleaned labels (what train reads)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Report of the findings: .json (with per-scan outcomes) or .csv."),
    model: str = typer.Option(
        "lumbar", help="Shipped model (region) or model directory: shape model and detector. A shipped region checks "
        "each scan's image with the shipped model of the region its labels show."),
    no_images: bool = typer.Option(False, "--no-images", help="Geometry only: do not read the images (no orientation or detector checks)."),
    shifted: str = typer.Option("drop", help="Scans whose labels are shifted by one level: drop or relabel."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary line."),
) -> None:
    """Find what clinical labels get wrong (duplicates, order, off-vertebra, spacing, gaps, shifts) and write a cleaned set."""
    from .annotations import load_annotations, save_annotations_csv
    from .cleaning import CleaningParams
    from .cleaning_evidence import check_annotations
    from .cleaning_report import skipped_warning, summary_lines, write_report
    from .io.outputs import check_targets, write_all_or_nothing

    _require_csv(output)
    if shifted not in ("drop", "relabel"):
        raise click.BadParameter(f"{shifted!r}: choose drop or relabel", param_hint="--shifted")
    if report is not None and report.suffix.lower() not in (".json", ".csv"):
        raise click.BadParameter(f"{report}: must end in .json or .csv", param_hint="--report")
    anns = load_annotations(sources, on_problem=None if quiet else warn)
    # the cleaned set and the report never replace a file the labels were read from (before the detector runs)
    read = sorted({a.source for a in anns if a.source is not None} | {p for p in sources if p.is_file()})
    check_targets([output, *([report] if report is not None else [])], read)
    params = CleaningParams(shifted=shifted)  # type: ignore[arg-type]
    # A shipped region checks each scan with the model of the region its labels show, as train's cleaning does;
    # a model directory checks every scan.
    labeler, labeler_for = region_checkers(model) if not no_images else (None, None)
    result = check_annotations(
        anns, model=model, use_images=not no_images, params=params, labeler=labeler, labeler_for=labeler_for
    )
    # staged beside the target, renamed into place: image paths relative to the target's folder
    outputs = [(output, lambda p: save_annotations_csv(result.cleaned, p, relative_to=output.parent))]
    if report is not None:
        outputs.append((report, lambda p: write_report(result, p)))
    write_all_or_nothing(outputs, read)  # the cleaned labels and the report, or neither
    lines = summary_lines(result)
    for line in lines[:-1]:
        echo(line, quiet)
    skipped = skipped_warning(result)
    if skipped is not None:
        typer.echo(f"warning: {skipped}", err=True)
    typer.echo(f"{lines[-1]}; cleaned labels in {output}" + (f", report in {report}" if report else ""))


def _classes(name: str, *roots: type[BaseException]) -> tuple[type[BaseException], ...]:
    """The classes called ``name`` among the roots and their bases (click's, and typer's own copy of click)."""
    return tuple({c for root in roots for c in root.__mro__ if c.__name__ == name})


# typer >= 0.2x carries its own copy of click, whose exceptions are not click's:
# usage errors from either must print one usage message, never a traceback.
_USAGE_ERRORS = _classes("ClickException", click.ClickException, typer.BadParameter)
_EXIT = _classes("Exit", click.exceptions.Exit, typer.Exit)
_ABORT = _classes("Abort", click.exceptions.Abort, typer.Abort)


#: Exit status after Ctrl+C (SIGINT): 128 + the signal's number, as a shell reports it.
EXIT_INTERRUPTED = 128 + 2
#: Exit status after SIGTERM (``kill``, ``timeout``, a service stop): 128 + the signal's number, as a shell reports it.
EXIT_TERMINATED = 128 + 15


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` runs (worker pools shut, partial outputs removed)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


@contextmanager
def _clean_exit_on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` while a command runs (main thread only; the old handler after).

    Without it the process ends at once: worker processes of ``--jobs N`` are
    left running without a parent, and a file being written stays half-written
    under its temporary name.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status instead of raising SystemExit."""
    # Before any command imports torch: OpenMP threads sleep instead of spinning while
    # they wait, so a shared server stays fast (README "Threads").
    passive_openmp()
    try:
        with warnings.catch_warnings(), _clean_exit_on_sigterm():  # library noise: spinelabel says what matters
            warnings.simplefilter("ignore")
            rv = app(args=argv, prog_name="spinelabel", standalone_mode=False)
    except SpinelabelError as exc:
        typer.echo(f"spinelabel: error: {one_line(str(exc))}", err=True)
        return EXIT_ERROR
    except _EXIT as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _USAGE_ERRORS as exc:
        getattr(exc, "show")()  # one "Usage: ... Error: ..." block, no traceback (click's and typer's copy)
        return int(getattr(exc, "exit_code", 2))
    except _ABORT:
        typer.echo("aborted", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        typer.echo("spinelabel: interrupted", err=True)
        return EXIT_INTERRUPTED
    except _Terminated:
        typer.echo("spinelabel: terminated", err=True)
        return EXIT_TERMINATED
    if rv == EXIT_INTERRUPTED:  # typer answers Ctrl+C in a command with Exit(130), which click returns
        typer.echo("spinelabel: interrupted", err=True)
    return rv if isinstance(rv, int) else 0


def console_main() -> None:
    """The ``spinelabel`` command: :func:`main`, then exit with its status.

    A Ctrl+C after the command has finished, while Python shuts down (torch's
    exit handlers), printed "Exception ignored in atexit callback ...
    KeyboardInterrupt" and exited 0: from here on it is ignored.
    """
    import signal

    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
