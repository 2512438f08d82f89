"""Reports of a cleaning run: JSON, CSV and the lines the command line prints."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .annotations import spreadsheet_text
from .cleaning import KINDS, SKIPPED_NOTE, CleaningReport
from .errors import InputError

__all__ = ["report_csv", "report_to_dict", "skipped_scans", "skipped_warning", "summary_lines", "write_report"]


def report_to_dict(report: CleaningReport) -> dict:
    """A JSON-serialisable summary, findings and per-scan outcomes."""
    by_kind = {k: sum(f.kind == k for f in report.findings) for k in KINDS}
    return {
        "summary": {
            "scans": len(report.scans),
            "scans_with_findings": len({f.scan for f in report.findings}),
            "scans_dropped": sum(s.dropped for s in report.scans),
            "points_in": sum(len(s.levels_in) for s in report.scans),
            "points_out": sum(len(s.levels_out) for s in report.scans),
            "findings": len(report.findings),
            "findings_by_kind": {k: n for k, n in by_kind.items() if n},
            "image_checks_skipped": len(skipped_scans(report)),
        },
        "findings": [
            {"scan": f.scan, "label": f.label, "kind": f.kind, "reason": f.reason, "action": f.action}
            for f in report.findings
        ],
        "scans": [
            {
                "scan": s.scan,
                "levels_in": list(s.levels_in),
                "levels_out": list(s.levels_out),
                "dropped": s.dropped,
                "checks": list(s.checks),
                "notes": list(s.notes),
            }
            for s in report.scans
        ],
    }


REPORT_CSV_COLUMNS = ("scan", "label", "kind", "action", "reason")


def report_csv(report: CleaningReport) -> str:
    """The findings as CSV text, one row per finding."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REPORT_CSV_COLUMNS)
    for f in report.findings:  # the scan id and the reason come from the user's files: no formulas
        writer.writerow([spreadsheet_text(str(cell)) for cell in (f.scan, f.label, f.kind, f.action, f.reason)])
    return buf.getvalue()


def write_report(report: CleaningReport, path: str | Path) -> None:
    """Write the report as JSON (``.json``) or CSV of findings (``.csv``), atomically."""
    from .io.outputs import atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(report_to_dict(report), indent=1) + "\n"
    elif suffix == ".csv":
        text = report_csv(report)
    else:
        raise InputError(f"{path}: report must be a .json or .csv file")
    atomic_write_bytes(path, text.encode("utf-8"))


def skipped_scans(report: CleaningReport) -> list[tuple[str, str]]:
    """(scan, why) of every scan whose image checks were skipped (its image could not be used)."""
    prefix = SKIPPED_NOTE + ": "
    return [(s.scan, note[len(prefix):]) for s in report.scans for note in s.notes if note.startswith(prefix)]


def skipped_warning(report: CleaningReport) -> str | None:
    """One line saying how many scans were checked without their image, or None when none was.

    "0 findings" means little when the image checks never ran: the user must see it.
    """
    skipped = skipped_scans(report)
    if not skipped:
        return None
    scan, why = skipped[0]
    return (
        f"image checks skipped for {len(skipped)} of {len(report.scans)} scans (geometry only), "
        f"e.g. {scan}: {why}"
    )


def summary_lines(report: CleaningReport) -> list[str]:
    """Human-readable lines: one per finding, then a total (which says when image checks were skipped)."""
    lines = [f"{f.scan} {f.label or '(scan)'} {f.kind}: {f.reason} -> {f.action}" for f in report.findings]
    d = report_to_dict(report)["summary"]
    skipped = f"; image checks skipped for {d['image_checks_skipped']} scans" if d["image_checks_skipped"] else ""
    lines.append(
        f"checked {d['scans']} scans: {d['findings']} findings in {d['scans_with_findings']} scans; "
        f"kept {d['points_out']} of {d['points_in']} points, dropped {d['scans_dropped']} scans{skipped}"
    )
    return lines
