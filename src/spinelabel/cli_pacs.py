"""Command line: ``spinelabel pacs find | harvest | label`` (DICOMweb; see :mod:`spinelabel.pacs`).

Registered on the main app in :mod:`spinelabel.cli`, whose ``main`` turns
every :class:`~spinelabel.errors.SpinelabelError` into one line and exit
status 1. Server settings come from the options or the environment
(``SPINELABEL_DICOMWEB_URL``, ``..._USER``, ``..._PASSWORD``,
``..._CA_BUNDLE``); prefer the environment for the password, which would
otherwise show in the process list. The server and study filter options
(``OPT_*``, :func:`server_config`, :func:`study_filters`) are defined here
once and also used by ``spinelabel batch``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click
import typer

from .cli_common import OPT_TRUST_ORIENTATION, check_region

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

    from .carried_count import CountingSeries

    from .pacs_client import PacsConfig

pacs_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as cli.HELP_MARKUP says
    help="A PACS over DICOMweb: find sagittal spine series, harvest labeled ones for training, label a study and store the result.",
)

#: Exit status when some items of a batch failed (the others were done).
EXIT_ERROR = 1

# The DICOMweb options, one definition each: every ``spinelabel pacs`` command and
# ``spinelabel batch`` (a DICOMweb query instead of a manifest) use these.
OPT_URL = typer.Option(None, "--url", help="DICOMweb root URL (env SPINELABEL_DICOMWEB_URL).", show_default=False)
OPT_USER = typer.Option(None, "--user", help="User name for HTTP basic auth (env SPINELABEL_DICOMWEB_USER).", show_default=False)
OPT_PASSWORD = typer.Option(None, "--password", help="Password (env SPINELABEL_DICOMWEB_PASSWORD, preferred).", show_default=False)
OPT_CA_BUNDLE = typer.Option(
    None, "--ca-bundle", help="CA bundle (PEM) for the server's TLS certificate (env SPINELABEL_DICOMWEB_CA_BUNDLE).", show_default=False
)
OPT_INSECURE = typer.Option(False, "--insecure", help="Do not verify the TLS certificate (test servers only).")
OPT_TIMEOUT = typer.Option(
    None, "--timeout", help="Deadline in seconds for each request, whole answer included (default 60).", show_default=False
)
OPT_RETRIEVE_TIMEOUT = typer.Option(
    None, "--retrieve-timeout", help="Deadline in seconds for retrieving one whole series (default 600).", show_default=False
)
# What is read of a DICOM series (spinelabel label, batch, pacs label).
OPT_STACK = typer.Option(
    None, "--stack", help="Stack to read when a series holds several at the same positions (Dixon W/F/IP/OP, echoes): "
    "a value as listed, a part of it (W), or an echo time.", show_default=False,
)
# Study filters (QIDO-RS, MR studies).
OPT_PATIENT_ID = typer.Option(None, "--patient-id", help="Only this PatientID.")
OPT_DATE = typer.Option(None, "--date", help="StudyDate or range, e.g. 20240101-20241231.")
OPT_STUDY = typer.Option(None, "--study", help="Only this StudyInstanceUID (repeatable).")
OPT_LIMIT = typer.Option(None, "--limit", min=1, help="At most this many studies.")


def server_config(
    url: str | None, user: str | None, password: str | None, ca_bundle: Path | None, insecure: bool,
    timeout: float | None, retrieve_timeout: float | None = None,
) -> PacsConfig:
    """The connection settings of the DICOMweb options (unset ones from the environment); PacsError when incomplete."""
    from .pacs_client import pacs_config

    return pacs_config(
        url, user, password, ca_bundle=ca_bundle, insecure=insecure, timeout_s=timeout, retrieve_timeout_s=retrieve_timeout
    )


def study_filters(patient_id: str | None, date: str | None, study: list[str] | None, limit: int | None) -> dict[str, Any]:
    """The study filter options as ``pacs_query.find_studies`` keyword arguments (InputError for a malformed one)."""
    from .pacs_query import check_filters

    check_filters(date, study)
    return {"patient_id": patient_id, "study_date": date, "study_uids": study or None, "limit": limit}


@pacs_app.callback()
def _pacs_group() -> None:
    """A PACS over DICOMweb: find sagittal spine series, harvest labeled ones for training, label a study and store the result."""


def _client(
    url: str | None, user: str | None, password: str | None, ca_bundle: Path | None, insecure: bool,
    timeout: float | None, retrieve_timeout: float | None = None,
) -> DICOMwebClient:
    from .pacs_client import connect

    return connect(server_config(url, user, password, ca_bundle, insecure, timeout, retrieve_timeout))


def _report_failures(failures: list[str]) -> None:
    for message in failures:
        typer.echo(f"failed: {message}", err=True)
    if failures:
        raise typer.Exit(EXIT_ERROR)


def _counting_series(
    client: "DICOMwebClient", study_uid: str, series_uid: str | None, stack: str | None, check_orientation: bool,
) -> "CountingSeries | None":
    """The series ``pacs label --count-from-series`` names (``auto``: ``pacs.find_counting_series``, said on stderr)."""
    from .pacs import find_counting_series, read_counting_series

    if series_uid is None:
        return None
    if series_uid != "auto":
        return read_counting_series(client, study_uid, series_uid, stack, check_orientation=check_orientation)
    counting, refused = find_counting_series(client, study_uid, stack, check_orientation=check_orientation)
    for reason in refused:
        typer.echo(f"not a counting series: {reason}", err=True)
    typer.echo(f"counting from series {counting.series_uid} (its {counting.anchor})" if counting is not None else
               "no series of the study can carry a count from C2 or S1: each series is counted on its own", err=True)
    return counting


@pacs_app.command("find")
def pacs_find(
    patient_id: Optional[str] = OPT_PATIENT_ID, date: Optional[str] = OPT_DATE,
    study: Optional[list[str]] = OPT_STUDY, limit: Optional[int] = OPT_LIMIT,
    all_series: bool = typer.Option(False, "--all-series", help="List every image series, not only sagittal MR."),
    url: Optional[str] = OPT_URL, user: Optional[str] = OPT_USER, password: Optional[str] = OPT_PASSWORD,
    ca_bundle: Optional[Path] = OPT_CA_BUNDLE, insecure: bool = OPT_INSECURE, timeout: Optional[float] = OPT_TIMEOUT,
) -> None:
    """List MR studies and their sagittal MR series (QIDO-RS)."""
    from .errors import PacsError
    from .pacs_query import find_series, find_studies

    client = _client(url, user, password, ca_bundle, insecure, timeout)
    studies = find_studies(client, **study_filters(patient_id, date, study, limit))
    failures = []
    for s in studies:
        typer.echo(f"{s.study_uid}  {s.patient_id or '-'}  {s.study_date or '-'}  {s.description!r}  [{' '.join(s.modalities)}]")
        try:
            series = find_series(client, s.study_uid, sagittal_only=not all_series, annotations=True)
        except PacsError as exc:
            failures.append(f"study {s.study_uid}: {exc}")
            continue
        for x in series:
            plane = f" {x.orientation}" if x.modality == "MR" else ""
            count = f" ({x.n_instances} instances)" if x.n_instances is not None else ""
            typer.echo(f"  {x.series_uid}  {x.modality}{plane}  {x.description!r}{count}")
    typer.echo(f"{len(studies)} studies", err=True)
    _report_failures(failures)


@pacs_app.command("harvest")
def pacs_harvest(
    out_dir: Path = typer.Argument(..., help="Folder to fill: OUT_DIR/<study>/<series>/*.dcm and harvest.json."),
    patient_id: Optional[str] = OPT_PATIENT_ID, date: Optional[str] = OPT_DATE,
    study: Optional[list[str]] = OPT_STUDY, limit: Optional[int] = OPT_LIMIT,
    unannotated: bool = typer.Option(False, "--include-unannotated", help="Also fetch studies without SR/PR objects."),
    url: Optional[str] = OPT_URL, user: Optional[str] = OPT_USER, password: Optional[str] = OPT_PASSWORD,
    ca_bundle: Optional[Path] = OPT_CA_BUNDLE, insecure: bool = OPT_INSECURE, timeout: Optional[float] = OPT_TIMEOUT,
    retrieve_timeout: Optional[float] = OPT_RETRIEVE_TIMEOUT, quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary output."),
) -> None:
    """Fetch sagittal MR series and their SR/GSPS labels for 'annotations import' and 'train' (WADO-RS)."""
    from tqdm import tqdm

    from .io.outputs import check_writable_folder
    from .pacs import harvest
    from .pacs_query import find_studies

    check_writable_folder(out_dir)  # one line now, not after the search
    client = _client(url, user, password, ca_bundle, insecure, timeout, retrieve_timeout)
    studies = find_studies(client, **study_filters(patient_id, date, study, limit))
    with tqdm(total=len(studies), desc="harvesting", unit="study", disable=quiet, file=sys.stderr) as bar:
        report = harvest(client, out_dir, studies=studies, annotated_only=not unannotated, progress=lambda _uid: bar.update(1))
    typer.echo(
        f"harvested {report.n_series} sagittal series and {report.n_annotations} annotation series "
        f"of {len(report.studies)} studies into {out_dir} ({len(studies)} studies found)"
    )
    _report_failures(report.failures)


@pacs_app.command("label")
def pacs_label(
    study_uid: str = typer.Argument(..., help="StudyInstanceUID to label."),
    region: str = typer.Option("lumbar", help="lumbar, cervical, whole, or auto (decided from each image)."),
    model: Optional[str] = typer.Option(None, help="Model directory (default: the shipped model of the region)."),
    series: Optional[str] = typer.Option(None, help="Only this SeriesInstanceUID (default: every sagittal MR series)."),
    output_dir: Path = typer.Option(Path("spinelabel-pacs"), "--output-dir", help="Folder for <series>.json, .sr.dcm and .gsps.dcm."),
    do_store: bool = typer.Option(False, "--store", help="Store the SR and GSPS back on the server (STOW-RS)."),
    stack: Optional[str] = OPT_STACK,
    url: Optional[str] = OPT_URL, user: Optional[str] = OPT_USER, password: Optional[str] = OPT_PASSWORD,
    ca_bundle: Optional[Path] = OPT_CA_BUNDLE, insecure: bool = OPT_INSECURE, timeout: Optional[float] = OPT_TIMEOUT,
    retrieve_timeout: Optional[float] = OPT_RETRIEVE_TIMEOUT,
    trust_orientation: bool = OPT_TRUST_ORIENTATION,
    count_from_series: Optional[str] = typer.Option(None, "--count-from-series", help="A SeriesInstanceUID of the study whose count is sure (from its C2, e.g. a whole-spine or cervicothoracic sagittal series, or from its S1, e.g. the lumbar T2 series): every other series is counted from it (spinelabel label --count-from), or from a series that took its count where it does not reach them (the stations of a whole-spine study: use --region auto, so that a neck or thoracic station names the vertebrae that pass the count on). 'auto': the first sagittal series of the study that counts from C2, else the first that counts from S1, if any."),
    count_from_stack: Optional[str] = typer.Option(None, "--count-from-stack", help="The stack to read of the --count-from-series series when it holds several (as --stack)."),
) -> None:
    """Retrieve a study's sagittal series, label them, write JSON + DICOM SR + GSPS, optionally store them."""
    from .pacs import label_study
    from .pipeline import make_labeler
    from .warning_codes import count_note

    if count_from_series is None and count_from_stack is not None:
        raise click.UsageError("--count-from-stack picks a stack of --count-from-series: give --count-from-series too")
    labeler = make_labeler(check_region(region), model, check_orientation=not trust_orientation)
    client = _client(url, user, password, ca_bundle, insecure, timeout, retrieve_timeout)
    counting = _counting_series(client, study_uid, count_from_series, count_from_stack, not trust_orientation)
    failures: list[str] = []
    notes: list[str] = []
    done = label_study(
        client, study_uid, labeler, output_dir, series_uid=series, do_store=do_store, failures=failures, stack=stack,
        counting=counting, notes=notes,
    )
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    for d in done:
        stored = f"; stored {len(d.stored)} objects" if d.stored else ""
        written = ", ".join(p.name for p in (d.outputs.sr, d.outputs.gsps) if p is not None)
        typer.echo(f"series {d.series_uid}: {d.n_vertebrae} vertebrae -> {d.outputs.json}, {written}{stored}"
                   f"{count_note(d.warnings)}")
        for w in d.warnings:
            typer.echo(f"warning: series {d.series_uid}: {w.line()}", err=True)
    _report_failures(failures)
