"""Lumbar benchmark: accuracy and speed on the held-out validation split.

Usage (from the repository root, with ../shared beside it)::

    python -m benchmarks.lumbar [--model DIR] [--split benchmarks/lumbar_split.json]

Labels every scan of the split's "validation" list (never used for training or
tuning) with the model loaded once, evaluates against the point annotations
(docs/evaluation.md), times the whole `spinelabel label` process on a few scans,
and writes the numbers to docs/RESULTS.md with the command, date and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "lumbar-mr"


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        # docs/ holds the benchmarks' own output (RESULTS.md, overlays), not code that ran
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(results: Path, key: str, body: str) -> None:
    """Replace (or append) the section between the key's markers in RESULTS.md."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = results.read_text() if results.exists() else "# Results\n\nEvery number here was written by a script in benchmarks/.\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    results.write_text(text)


def held_out_truth() -> tuple[list[str], dict, int]:
    """The held-out cases of benchmarks/lumbar_split.json, each one's ground truth (the source's points plus our S1
    point, ``annotations/lumbar-s1.csv``) by scan id, and how many scans got an S1 point."""
    from spinelabel.annotations import add_labels, load_annotations

    cases = json.loads((REPO / "benchmarks" / "lumbar_split.json").read_text())["validation"]
    sources = load_annotations([SHARED / c / "centroids.json" for c in cases])
    sources, n_s1 = add_labels(sources, load_annotations([REPO / "annotations" / "lumbar-s1.csv"]))
    return cases, {a.scan_id: a for a in sources}, n_s1


def process_times(images: list[Path], model: str, n: int) -> list[float]:
    """Wall time of the whole `spinelabel label` process (start-up, model load, I/O)."""
    exe = Path(sys.executable).with_name("spinelabel")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for img in images[:n]:
            t = time.perf_counter()
            subprocess.run([str(exe), "label", str(img), "--model", model, "-o", f"{tmp}/out.json", "-q"], check=True)
            times.append(time.perf_counter() - t)
    return times


def flag_counts(report, confidences: dict[str, dict[str, float]], low: float = 0.5,
                warned: set[str] | None = None) -> dict[str, int]:
    """Counts behind :func:`flag_stats`: wrong/right labels, flagged by confidence, flagged or warned."""
    n = dict.fromkeys(("wrong", "right", "wrong_flagged", "right_flagged", "wrong_warned", "right_warned"), 0)
    for scan in report.per_scan:
        conf = confidences.get(scan.scan_id, {})
        for m in scan.matches:
            low_conf = conf.get(m.pred_label, 1.0) < low
            flagged = low_conf or (warned is not None and scan.scan_id in warned)
            kind = "right" if m.correct else "wrong"
            n[kind] += 1
            n[f"{kind}_flagged"] += low_conf
            n[f"{kind}_warned"] += flagged
    return n


def flag_stats(report=None, confidences: dict[str, dict[str, float]] | None = None, low: float = 0.5,
               warned: set[str] | None = None, counts: dict[str, int] | None = None) -> str:
    """How well the output marks the labels to check: wrong labels flagged, right labels flagged.

    ``confidences``: scan -> predicted label -> confidence. Only matched
    predictions count. A label is flagged when its confidence is below ``low``;
    with ``warned`` (the scans whose output carries a warning), also when its
    scan has a warning, and the right labels in warned scans are counted too
    (the price of the warnings: a reader asked to check labels that were right).
    ``counts``: the :func:`flag_counts` of a warned report, already made (then
    ``report`` and ``confidences`` are not needed).
    """
    n = counts if counts is not None else flag_counts(report, confidences or {}, low, warned)
    warned_part = counts is not None or warned is not None
    text = (f"{n['wrong_flagged']}/{n['wrong']} wrong labels flagged (confidence < {low}); "
            f"{n['right_flagged']}/{n['right']} right labels flagged")
    if warned_part:
        text += (f"; {n['wrong_warned']}/{n['wrong']} wrong labels flagged or in a scan with a warning "
                 f"({n['right_warned']}/{n['right']} right ones)")
    return text


def warning_code_rows(scans: list[tuple[list[str], bool]]) -> list[str]:
    """Table rows: for each warning code, how many scans carry it and how many of those are wrong.

    ``scans``: (warning codes, every name right) per labeled scan. Then three
    summary rows: any code of concern ``count``, none of them, and no warning
    at all. "share of wrong scans" is the part of all wrong scans the row
    holds: for the ``count`` rows, how many miscounted scans a worklist that
    routes on those codes would catch or miss.
    """
    from spinelabel.warning_codes import CODES, COUNT

    n_wrong = sum(not right for _, right in scans)

    def row(name: str, concern: str, members: list[bool]) -> str:
        wrong = sum(not right for right in members)
        share = f"{wrong}/{n_wrong}" if n_wrong else "—"
        rate = f"{100 * wrong / len(members):.0f} %" if members else "—"
        return f"| {name} | {concern} | {len(members)} | {wrong} ({rate}) | {share} |"

    seen = sorted({c for codes, _ in scans for c in codes}, key=list(CODES).index)
    lines = [row(f"`{c}`", CODES[c][0], [right for codes, right in scans if c in codes]) for c in seen]
    counted = [any(CODES[c][0] == COUNT for c in codes) for codes, _ in scans]
    lines.append(row("any `count` code", COUNT, [right for (_, right), k in zip(scans, counted) if k]))
    lines.append(row("no `count` code", "—", [right for (_, right), k in zip(scans, counted) if not k]))
    lines.append(row("no warning at all", "—", [right for codes, right in scans if not codes]))
    return lines


#: The header of :func:`warning_code_rows`' table.
WARNING_CODE_HEAD = "| warning code | concern | scans with it | wrong scans among them | share of all wrong scans |\n|---|---|---|---|---|"


#: Edges of the confidence bands of :func:`reliability_rows`: the flag threshold (0.5, ``results.LOW_CONFIDENCE``)
#: is one, and the bands above it are a tenth wide, the resolution at which a reader would act on a number.
CONFIDENCE_EDGES = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def confidence_records(report, confidences: dict[str, dict[str, float]],
                       warned: set[str]) -> list[tuple[float, bool, bool]]:
    """(confidence, name right, scan warned) of every matched name of ``report`` (confidence 1.0 when unknown,
    as :func:`flag_counts` takes it)."""
    out = []
    for scan in report.per_scan:
        conf = confidences.get(scan.scan_id, {})
        out += [(conf.get(m.pred_label, 1.0), bool(m.correct), scan.scan_id in warned) for m in scan.matches]
    return out


def reliability_rows(records: list[tuple[float, bool, bool]], edges: tuple[float, ...] = CONFIDENCE_EDGES) -> list[str]:
    """Table rows: per confidence band, how many names, how many of them right, and the wrong ones in scans
    without a warning. In the bands at and above the flag threshold those are the names a reader would take as
    they stand; below it they carry "?". Bands are [lo, hi), the last one [lo, hi].

    Raises
    ------
    ValueError
        For a confidence outside [edges[0], edges[-1]] (or NaN): it would fall in no band, and the table would
        no longer add up to the names that :func:`flag_counts` counts.
    """
    outside = [c for c, _, _ in records if not edges[0] <= c <= edges[-1]]
    if outside:
        raise ValueError(f"confidences outside [{edges[0]}, {edges[-1]}]: {outside[:5]}")
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        band = [(right, warned) for c, right, warned in records if lo <= c < hi or (last and c == hi)]
        right = sum(r for r, _ in band)
        share = f"{100 * right / len(band):.1f} %" if band else "—"
        unwarned = sum(not r and not w for r, w in band)
        rows.append(f"| {lo:.1f}-{hi:.1f} | {len(band)} | {right} | {share} | {len(band) - right} | {unwarned} |")
    return rows


#: The header of :func:`reliability_rows`' table.
RELIABILITY_HEAD = ("| confidence | names | right | share right | wrong | wrong, in a scan without a warning |\n"
                    "|---|---|---|---|---|---|")


def _s1_summary(result) -> tuple[float, float] | None:
    """(confidence, distance to L5 in mm) of a labeled S1, or None when S1 was not labeled."""
    by = {v.label: v for v in result.vertebrae}
    if "S1" not in by:
        return None
    dist = float(((by["S1"].position_mm - by["L5"].position_mm) ** 2).sum() ** 0.5) if "L5" in by else float("nan")
    return by["S1"].confidence, dist


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lumbar")
    ap.add_argument("--split", type=Path, default=REPO / "benchmarks" / "lumbar_split.json")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    ap.add_argument("--processes", type=int, default=3, help="scans to time as whole processes")
    ap.add_argument("--s1-labels", type=Path, default=REPO / "annotations" / "lumbar-s1.csv",
                    help="S1 points annotated by us (docs/annotations.md), scored as a second ground truth")
    args = ap.parse_args(argv)

    from spinelabel.annotations import add_labels, load_annotations
    from spinelabel.evaluation import evaluate, format_report, report_to_dict
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler
    from spinelabel.models import resolve_model_dir

    cases = json.loads(args.split.read_text())["validation"]
    t0 = time.perf_counter()
    labeler = Labeler.load(args.model)
    load_s = time.perf_counter() - t0
    preds, per_scan_s, failures, s1, confidences, warned = {}, [], [], [], {}, set()
    for case in cases:
        image = args.data / case / "image.nii.gz"
        t = time.perf_counter()
        try:
            result = labeler.label(load_image([image]).volume)
            preds[case] = [(v.label, v.position_mm) for v in result.vertebrae]
            s1.append(_s1_summary(result))
            confidences[case] = {v.label: v.confidence for v in result.vertebrae}
            if result.warnings:
                warned.add(case)
        except Exception as exc:  # a failure is a benchmark result, not a crash
            failures.append(f"{case}: {exc}")
        per_scan_s.append(time.perf_counter() - t)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gt = load_annotations([args.data / c / "centroids.json" for c in cases])
    report = evaluate(preds, gt)
    gt_s1, n_s1 = add_labels(gt, load_annotations([args.s1_labels]))
    report_s1 = evaluate(preds, gt_s1)
    o1 = report_to_dict(report_s1)["overall"]
    proc = process_times([args.data / c / "image.nii.gz" for c in cases], args.model, args.processes)
    metrics = report_to_dict(report)
    print(format_report(report))

    o = metrics["overall"]
    cfg = json.loads((resolve_model_dir(args.model) / "config.json").read_text())
    cmd = "python -m benchmarks.lumbar" + (" " + " ".join(argv) if argv else " " + " ".join(sys.argv[1:])).rstrip()
    body = f"""## Lumbar: held-out validation split ({len(cases)} scans)

- command: `{cmd.strip()}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}
- model: `{cfg['name']}` {cfg['version']} (trained on {len(cfg.get('training', {}).get('scans', []))} scans, {cfg.get('training', {}).get('seconds', '?')} s of training)
- split: `benchmarks/lumbar_split.json` (validation scans never trained or tuned on)

| metric | value | target (issue #3) |
|---|---|---|
| detection sensitivity | {o['sensitivity']*100:.1f} % | ≥ 99 % |
| detection precision | {o['precision']*100:.1f} % | ≥ 99.5 % |
| localization error mean / median / 95th pct / max | {o['error_mm']['mean']:.2f} / {o['error_mm']['median']:.2f} / {o['error_mm']['p95']:.2f} / {o['error_mm']['max']:.2f} mm | mean ≤ 2.4 mm |
| identification rate (matched and right label) | {o['identification_rate']*100:.1f} % ({o['n_identified']}/{o['n_gt']}) | |
| scan labeling accuracy (all right, no FP) | {o['scan_accuracy']*100:.1f} % ({o['n_scans_correct']}/{o['n_scans']}) | ≥ 97 % |
| predictions outside the annotated range (not scored) | {o['outside']} | |
| label time per scan, model loaded once: median / max | {statistics.median(per_scan_s):.2f} / {max(per_scan_s):.2f} s | median ≤ 2 s |
| model load | {load_s:.2f} s | |
| whole `spinelabel label` process, median of {len(proc)} | {f'{statistics.median(proc):.2f} s' if proc else 'not timed (--processes 0)'} | |
| peak memory (benchmark process) | {peak_mib:.0f} MiB | ≤ 2048 MiB |
| failures | {len(failures)} {'; '.join(failures)} | |
| confidence as a flag | {flag_stats(report, confidences, warned=warned)} | |
| **with S1 scored** ({n_s1} scans with an S1 point, `annotations/lumbar-s1.csv`): identification | {o1['identification_rate']*100:.1f} % ({o1['n_identified']}/{o1['n_gt']}); S1 {report_s1.per_level.get('S1', (0, 0))[0]}/{report_s1.per_level.get('S1', (0, 0))[1]} | |
| with S1 scored: scans entirely right / sensitivity / precision | {o1['n_scans_correct']}/{o1['n_scans']} / {o1['sensitivity']*100:.1f} % / {o1['precision']*100:.1f} % | |
| with S1 scored: confidence as a flag | {flag_stats(report_s1, confidences, warned=warned)} | |
| S1 labeled (not annotated, so not scored) | {sum(x is not None for x in s1)}/{len(s1)} scans; S1–L5 distance median {statistics.median([x[1] for x in s1 if x] or [float('nan')]):.1f} mm, confidence median {statistics.median([x[0] for x in s1 if x] or [float('nan')]):.2f} | |

Per scan (T11-L5 as annotated by the sources):

```
{format_report(report)}
```

Per scan with our S1 points added to the ground truth:

```
{format_report(report_s1)}
```
"""
    write_section(args.results, "lumbar-benchmark", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
