"""PACS benchmark: harvest and import 100 labeled studies from a real Orthanc, and how well cleaning finds planted faults.

Usage (from the repository root, with ../shared beside it and Orthanc installed)::

    python -m benchmarks.pacs [--studies 100] [--faulty 20]

Builds clinical-style studies from *training* scans of
benchmarks/lumbar_split.json (4 mm sagittal series, spine labels as GSPS text
objects, new UIDs for every copy), plants one fault in a known subset
(missing level, duplicate, shifted by one level, label on a disc; see
spinelabel.testing.clinical), stores everything in a private Orthanc over
STOW-RS, then measures:

- harvest: ``spinelabel.pacs.harvest`` (QIDO + WADO-RS) of every study;
- import: the GSPS labels of the harvest into ScanAnnotations;
- check: ``spinelabel.cleaning_evidence.check_annotations`` with the images and the
  shipped detector, and geometry-only; recall and precision of its findings
  against the planted faults (a finding is right when its study and kind
  match a planted fault).

Writes the numbers to docs/RESULTS.md between the pacs-benchmark markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import SHARED, git_commit, write_section

REPO = Path(__file__).resolve().parents[1]
#: Base scans: the first of each source in the training split, spread over it.
N_BASES = 10
#: Seed of the choice of faulty studies.
SEED = 2026


def _bases(split: Path, n: int) -> list[str]:
    train = json.loads(split.read_text())["train"]
    validation = set(json.loads(split.read_text())["validation"])
    myoseg = [c for c in train if c.startswith("myoseg") and c not in validation]
    zukic = [c for c in train if c.startswith("zukic") and c not in validation]
    n_zukic = max(1, n // 5)
    pick = lambda xs, k: [xs[round(i * (len(xs) - 1) / max(k - 1, 1))] for i in range(k)]  # noqa: E731
    return pick(myoseg, n - n_zukic) + pick(zukic, n_zukic)


def _build(root: Path, n_studies: int, n_faulty: int, split: Path, client) -> dict[str, str | None]:
    """Write and STOW the studies; returns patient id -> planted fault (None: clean)."""
    import numpy as np

    from spinelabel.annotations import load_annotations
    from spinelabel.io import load_image
    from spinelabel.pacs import store
    from spinelabel.testing.clinical import FAULTS, clinical_series_volume, plant_fault, write_clinical_study

    bases = _bases(split, N_BASES)
    base_data = []
    for case in bases:
        ann = load_annotations([SHARED / case / "centroids.json"])[0]
        base_data.append((case, ann, clinical_series_volume(load_image([ann.image]).volume)))
    rng = np.random.default_rng(SEED)
    faulty = sorted(rng.choice(n_studies, size=n_faulty, replace=False).tolist())
    planted: dict[str, str | None] = {}
    for i in range(n_studies):
        case, ann, volume = base_data[i % len(base_data)]
        fault = FAULTS[faulty.index(i) % len(FAULTS)] if i in faulty else None
        labels = list(ann.points.items()) if fault is None else plant_fault(dict(ann.points), fault)
        pid = f"BENCH-{i:03d}"
        study = write_clinical_study(volume, labels, root / "written" / pid, patient_id=pid)
        store(client, [*study.image_files, study.gsps_file])
        shutil.rmtree(root / "written" / pid)
        planted[pid] = fault
    return planted


def _score(findings, planted: dict[str, str | None]) -> dict:
    """Recall / precision of findings against planted (study, kind) pairs."""
    expected = {(pid, kind) for pid, kind in planted.items() if kind}
    found = {(f.scan.rsplit("_", 1)[0], f.kind) for f in findings}
    tp = len(expected & found)
    per_kind = {}
    for kind in sorted({k for _, k in expected}):
        exp_k = {e for e in expected if e[1] == kind}
        per_kind[kind] = (len(exp_k & found), len(exp_k))
    return {
        "planted": len(expected), "findings": len(found), "tp": tp,
        "recall": tp / len(expected) if expected else 1.0,
        "precision": tp / len(found) if found else 1.0,
        "per_kind": per_kind,
        "false": sorted(found - expected), "missed": sorted(expected - found),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--faulty", type=int, default=20, help="studies with one planted fault each")
    ap.add_argument("--split", type=Path, default=REPO / "benchmarks" / "lumbar_split.json")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the harvest here (default: a temporary folder)")
    args = ap.parse_args(argv)

    from spinelabel.cleaning_evidence import check_annotations
    from spinelabel.io.dicom_label_read import import_dicom_annotations
    from spinelabel.pacs import harvest
    from spinelabel.pacs_client import connect, pacs_config
    from spinelabel.testing.orthanc import orthanc

    root = Path(args.workdir or tempfile.mkdtemp(prefix="spinelabel-pacs-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        with orthanc(root / "orthanc") as server:
            client = connect(pacs_config(server.dicomweb_url, server.username, server.password))
            t = time.perf_counter()
            planted = _build(root, args.studies, args.faulty, args.split, client)
            build_s = time.perf_counter() - t
            print(f"stored {len(planted)} studies in {build_s:.1f} s", file=sys.stderr)

            t = time.perf_counter()
            report = harvest(client, root / "harvest")
            harvest_s = time.perf_counter() - t
        harvested_mib = sum(f.stat().st_size for f in (root / "harvest").rglob("*") if f.is_file()) / 2**20
        print(f"harvested {len(report.studies)} studies in {harvest_s:.1f} s", file=sys.stderr)

        t = time.perf_counter()
        imported = import_dicom_annotations([root / "harvest"])
        import_s = time.perf_counter() - t
        anns = imported.annotations

        t = time.perf_counter()
        geometry = check_annotations(anns, model="lumbar", use_images=False)
        geometry_s = time.perf_counter() - t
        t = time.perf_counter()
        full = check_annotations(anns, model="lumbar")
        full_s = time.perf_counter() - t
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    s_full, s_geo = _score(full.findings, planted), _score(geometry.findings, planted)
    print(json.dumps({"full": s_full, "geometry": s_geo}, indent=1, default=str))
    n = len(planted)
    per_kind = " · ".join(
        f"{k} {s_full['per_kind'][k][0]}/{s_full['per_kind'][k][1]} (geometry only {s_geo['per_kind'][k][0]}/{s_geo['per_kind'][k][1]})"
        for k in s_full["per_kind"]
    )
    cmd = "python -m benchmarks.pacs" + ("".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])))
    body = f"""## PACS: harvest, import and clean {n} studies from Orthanc (issue #4)

- command: `{cmd}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}; Orthanc with its DICOMweb plugin on loopback, basic auth
- studies: {n} copies (new UIDs) of {N_BASES} *training* scans of `benchmarks/lumbar_split.json` as 4 mm sagittal series (1.5 mm pixels), labels as GSPS text objects; {args.faulty} studies with one planted fault each (seed {SEED})

| step | value |
|---|---|
| write + STOW-RS {n} studies (setup, not the product) | {build_s:.1f} s |
| harvest (QIDO + WADO-RS) of {len(report.studies)} studies, {report.n_series} series + {report.n_annotations} GSPS, {harvested_mib:.0f} MiB | {harvest_s:.1f} s ({harvest_s / max(n, 1):.2f} s per study) |
| import of the harvested GSPS | {import_s:.1f} s, {len(anns)} scans, {len(imported.problems)} problems |
| harvest + import | {harvest_s + import_s:.1f} s |
| check with images and the shipped detector | {full_s:.1f} s ({full_s / max(len(anns), 1):.2f} s per scan) |
| check, geometry only | {geometry_s:.2f} s |
| failures during harvest | {len(report.failures)} |
| cleaning recall (planted faults found) | {s_full['recall'] * 100:.0f} % ({s_full['tp']}/{s_full['planted']}); geometry only {s_geo['recall'] * 100:.0f} % ({s_geo['tp']}/{s_geo['planted']}) |
| cleaning precision (findings that are planted faults) | {s_full['precision'] * 100:.0f} % ({s_full['tp']}/{s_full['findings']}); geometry only {s_geo['precision'] * 100:.0f} % ({s_geo['tp']}/{s_geo['findings']}) |
| per fault kind | {per_kind} |
| false findings / missed faults | {s_full['false'] or 'none'} / {s_full['missed'] or 'none'} |

The detector behind the image checks was trained on these base scans, which flatters the "shifted"
and "far from vertebra" checks; the geometry-only column does not depend on it (it cannot see a
shifted scan at all). Clean studies carry the research centroids as labels: real clinical clicks
are sloppier (see `spinelabel.cleaning` for the tolerances and their reasons).
"""
    write_section(args.results, "pacs-benchmark", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
