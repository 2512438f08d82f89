"""Command line: ``spinelabel review`` (the local review page; see :mod:`spinelabel.review`).

Registered on the main app in :mod:`spinelabel.cli`, whose ``main`` turns
every :class:`~spinelabel.errors.SpinelabelError` into one line and exit
status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli_common import OPT_TRUST_ORIENTATION, check_region, echo

#: Where results are read and saved when ``--labels`` is not given.
DEFAULT_LABELS_DIR = Path("spinelabel-review")
#: Reviewer name recorded when the login name cannot be found (a container without a user entry).
UNKNOWN_REVIEWER = "unknown"


def _login_name() -> str:
    """The login name of this process's user, or :data:`UNKNOWN_REVIEWER`."""
    import getpass

    try:
        return getpass.getuser() or UNKNOWN_REVIEWER
    except (OSError, KeyError):
        return UNKNOWN_REVIEWER


def review(
    inputs: list[Path] = typer.Argument(..., readable=False, help="Scans to review: NIfTI files or DICOM series folders, one scan each."),
    labels: Path = typer.Option(DEFAULT_LABELS_DIR, "--labels", help="Folder of the results: NAME.json is used where it exists, else the scan is labeled into it; reviews are saved there (with NAME.sr.dcm and NAME.gsps.dcm for DICOM inputs)."),
    region: str = typer.Option("lumbar", help="Region for scans that still need labeling: lumbar, cervical, whole, or auto."),
    model: Optional[str] = typer.Option(None, help="Model directory (default: the shipped model of the region)."),
    series: Optional[str] = typer.Option(None, help="SeriesInstanceUID to use when a folder holds several series (without it, the only sagittal one)."),
    port: Optional[int] = typer.Option(None, min=0, max=65535, help="Port to listen on (default 8765; 0: any free port).", show_default=False),
    host: Optional[str] = typer.Option(None, help="Listen on this address instead of 127.0.0.1 (every request needs the token in the address printed at start).", show_default=False),
    reviewer: Optional[str] = typer.Option(None, help="Name recorded with each review (default: the login name).", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the address to open."),
    trust_orientation: bool = OPT_TRUST_ORIENTATION,
) -> None:
    """Serve a local page to confirm or correct the labels of scans; saved reviews are training data for 'train'."""
    from .errors import InputError
    from .io.outputs import check_writable_folder
    from .output_names import unique_names
    from .review import DEFAULT_PORT, ReviewSession, make_server, prepare_scans

    region = check_region(region)
    check_writable_folder(labels)  # reviews are saved there: one line now, not a failed save later
    who = reviewer or _login_name()
    server = make_server(ReviewSession([], who), host, DEFAULT_PORT if port is None else port)  # a taken port: now

    def labeler():
        """The region's labeler, loaded only when a scan has no result yet."""
        from .pipeline import make_labeler

        return make_labeler(region, model, check_orientation=not trust_orientation)

    try:
        scans, images, failures = prepare_scans(inputs, unique_names(inputs), labels, labeler, series)
        for inp, message in failures:
            typer.echo(f"failed: {inp}: {message}", err=True)
        if not scans:
            raise InputError("no scan to review (every input failed: reasons above)")
        server.session = ReviewSession(scans, who, images)
        echo(f"reviewing {len(scans)} scan(s); results in {labels}; Ctrl+C stops", quiet)
        typer.echo(f"open {server.url}")  # the token is printed here only
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            echo("stopped", quiet, err=True)
    finally:
        server.server_close()  # no new requests
        server.session.close()  # and a save in progress finishes before the process exits
