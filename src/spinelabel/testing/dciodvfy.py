"""Validate DICOM files with ``dciodvfy`` (David Clunie's dicom3tools), an independent checker.

Used by the tests that write our SR and GSPS. Install on Debian/Ubuntu:
``apt-get install dicom3tools`` (``.ci/run`` does).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DciodvfyReport", "dciodvfy_executable", "validate"]

#: dciodvfy checks one object in well under a second; a loaded CI machine may need more.
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DciodvfyReport:
    """What dciodvfy said about one file.

    Attributes
    ----------
    iod : str
        The IOD it checked the file against (e.g. ``Comprehensive3DSR``).
    errors, warnings : tuple of str
        Its ``Error - ...`` and ``Warning - ...`` lines, prefix removed.
    """

    iod: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def dciodvfy_executable() -> str | None:
    """Path of ``dciodvfy``, or None when dicom3tools is not installed."""
    return shutil.which("dciodvfy")


def validate(path: str | Path) -> DciodvfyReport:
    """Run dciodvfy on one file and sort its messages.

    Parameters
    ----------
    path : str or Path
        A DICOM Part 10 file.

    Returns
    -------
    DciodvfyReport

    Raises
    ------
    FileNotFoundError
        dciodvfy is not installed.
    RuntimeError
        dciodvfy did not name the IOD it checked (it could not read the file).
    """
    exe = dciodvfy_executable()
    if exe is None:
        raise FileNotFoundError("dciodvfy not found (apt-get install dicom3tools)")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    errors = tuple(line.removeprefix("Error - ") for line in lines if line.startswith("Error"))
    warnings = tuple(line.removeprefix("Warning - ") for line in lines if line.startswith("Warning"))
    named = [line for line in lines if not line.startswith(("Error", "Warning")) and " " not in line]
    if not named:
        raise RuntimeError(f"dciodvfy could not check {path}: {' | '.join(lines) or f'exit status {run.returncode}'}")
    return DciodvfyReport(named[0], errors, warnings)
