"""Lumbar labeling as the field of view's edge moves level by level, on the held-out split.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.fov_sweep [--model DIR]

Clinical lumbar series start and stop anywhere: a thoracolumbar study may end
at L3, a lumbar one may start at L2 or stop at the L5/S1 disc. Each held-out
scan of benchmarks/lumbar_split.json is cut along its cranio-caudal axis at a
series of edges placed by its own annotated levels, in steps of half a level
(the level step ``d`` is the local distance between annotated centres):

- bottom edges, every level above kept: from the middle of S1 (``L5 + 1.0 d``)
  up through the L5/S1 disc, the middle of L5 ... to the L3/L4 disc
  (``L5 - 1.5 d``, with ``d`` the L4-L5 step);
- top edges, every level below kept: from the T12/L1 disc (``L1 + 0.5 d``) down
  through the middle of L1 ... to the middle of L3 (``L1 - 2.0 d``, with ``d``
  the L1-L2 step).

Each cut image is labeled by the shipped lumbar model and scored against the
annotated points more than 10 mm inside it (``benchmarks.robustness.cut``).
Without S1 in view a lumbar count cannot be anchored, so the question for the
bottom edges is less "are the names right" than "is every wrong name marked
for checking": the table counts the wrong names that carry neither a
confidence below 0.5 nor a warning in their scan (the worst output there is).
Nothing here is tuned: it measures. Writes a section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.lumbar import (
    RELIABILITY_HEAD,
    REPO,
    SHARED,
    confidence_records,
    flag_counts,
    git_commit,
    held_out_truth,
    reliability_rows,
    write_section,
)
from benchmarks.robustness import Labeled, cut
from spinelabel.results import LOW_CONFIDENCE

#: (edge name, level the edge is placed by, its neighbour that sets the step,
#: fraction of the step away from the level, towards the side cut off,
#: keep_above). Positive fractions move the edge away from the neighbour.
EDGES: tuple[tuple[str, str, str, float, bool], ...] = (
    ("bottom at mid-S1", "L5", "L4", 1.0, True),
    ("bottom at L5/S1 disc", "L5", "L4", 0.5, True),
    ("bottom at mid-L5", "L5", "L4", 0.0, True),
    ("bottom at L4/L5 disc", "L5", "L4", -0.5, True),
    ("bottom at mid-L4", "L5", "L4", -1.0, True),
    ("bottom at L3/L4 disc", "L5", "L4", -1.5, True),
    ("top at T12/L1 disc", "L1", "L2", 0.5, False),
    ("top at mid-L1", "L1", "L2", 0.0, False),
    ("top at L1/L2 disc", "L1", "L2", -0.5, False),
    ("top at mid-L2", "L1", "L2", -1.0, False),
    ("top at L2/L3 disc", "L1", "L2", -1.5, False),
    ("top at mid-L3", "L1", "L2", -2.0, False),
)



def edge_offset_mm(points: dict[str, np.ndarray], level: str, neighbour: str, fraction: float) -> float:
    """World-z offset from ``level`` to the edge: ``fraction`` of the level step, away from ``neighbour``."""
    step = float(points[level][2] - points[neighbour][2])
    return fraction * step


def unmarked_wrong(report, run: Labeled) -> list[str]:
    """``scan: true -> named (confidence)`` for each wrong name at or above the flag threshold
    (``results.LOW_CONFIDENCE``) in a scan without a warning: a reader takes it as it stands."""
    out = []
    for scan in report.per_scan:
        if scan.scan_id in run.warned:
            continue
        conf = run.conf.get(scan.scan_id, {})
        out += [f"{scan.scan_id}: {m.gt_label} -> {m.pred_label} ({conf.get(m.pred_label, 1.0):.2f})"
                for m in scan.matches if not m.correct and conf.get(m.pred_label, 1.0) >= LOW_CONFIDENCE]
    return out


def _row(name: str, report, run: Labeled) -> tuple[str, dict[str, int]]:
    """One edge's table row, and its counts for the totals."""
    counts = flag_counts(report, run.conf, warned=run.warned)
    worst = unmarked_wrong(report, run)
    sens = "n/a" if report.sensitivity is None else f"{100 * report.sensitivity:.1f} %"
    ident = "n/a" if report.identification_rate is None else f"{100 * report.identification_rate:.1f} %"
    no_wrong = sum(all(m.correct for m in s.matches) and not s.false_positives for s in report.per_scan)
    wrong_scans = [s.scan_id for s in report.per_scan if not s.all_correct]
    row = (f"| {name} | {sens} | {ident} | {report.n_scans_correct}/{report.n_scans} | {no_wrong}/{report.n_scans} | "
           f"{counts['wrong']} | {counts['wrong_warned']} | {'; '.join(worst) or '—'} | "
           f"{'; '.join(run.failures + wrong_scans) or '—'} |")
    return row, counts | {"unmarked": len(worst), "scans": report.n_scans, "right": report.n_scans_correct}


def main(argv: list[str] | None = None) -> int:
    """Cut every held-out scan at each of ``EDGES``, label, score, and write the RESULTS section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lumbar")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)

    from spinelabel.annotations import ScanAnnotation
    from spinelabel.evaluation import evaluate
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler

    cases, gt, n_s1 = held_out_truth()
    images = {c: load_image([SHARED / c / "image.nii.gz"]).volume for c in cases}
    labeler = Labeler.load(args.model)
    rows, records, total = [], [], {"scans": 0, "right": 0, "wrong": 0, "wrong_warned": 0, "unmarked": 0}
    for name, level, neighbour, fraction, keep_above in EDGES:
        truth, run = [], Labeled()
        for case in cases:
            points = dict(gt[case].points)
            offset = edge_offset_mm(points, level, neighbour, fraction)
            volume, kept = cut(images[case], points, level, offset, keep_above=keep_above)
            truth.append(ScanAnnotation(case, None, kept))
            run.add(case, labeler, volume)
        report = evaluate(run.preds, truth)
        row, counts = _row(name, report, run)
        records += confidence_records(report, run.conf, run.warned)
        rows.append(row)
        print(row, flush=True)
        for key in total:
            total[key] += counts[key]
    body = f"""## Lumbar: the field of view's edge moved level by level (held-out split)

- command: `python -m benchmarks.fov_sweep {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the {len(cases)} held-out scans, each cut at the edges of the module docstring of `benchmarks/fov_sweep.py`
  (half a level apart, placed by the scan's own annotated levels); ground truth: the sources' T11-L5 points plus
  our S1 points ({n_s1} scans, `annotations/lumbar-s1.csv`), those more than 10 mm inside the cut image;
  shipped lumbar model; match radius 20 mm. Measured only, nothing tuned on it.
- totals: {total['right']} of {total['scans']} cut scans entirely right; {total['wrong']} wrong names,
  {total['wrong_warned']} of them below 0.5 or in a scan with a warning; **{total['unmarked']} wrong names at
  {LOW_CONFIDENCE} or above in a scan without a warning**.
- "no wrong name": every matched name right and no false vertebra (a vertebra missed at the cut edge allowed).

| edge | sensitivity | identification | scans right | no wrong name | wrong names | flagged or warned | sure, unwarned wrong names | failures, scans not entirely right |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

How often a name is right at each confidence, over every cut above (matched names; a name below {LOW_CONFIDENCE}
carries "?" in every output):

{RELIABILITY_HEAD}
{chr(10).join(reliability_rows(records))}
"""
    write_section(args.results, "lumbar-fov-sweep", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
