"""The other sagittal series of a lumbar study counted from its T2 series (``--count-from``, count from S1).

Usage (repository root, ../shared beside it)::

    python -m benchmarks.count_from_study

A lumbar study holds several sagittal series of one patient in one frame of
reference: T2, T1, STIR, often a thick-slice 2D stack. Each is read on its own
at a count of its own, and a T1 or STIR series is read less surely than the T2
(``benchmarks.robustness``: t1-like, t1-like-dark-air and stir-like are its
weaker contrast rows). A radiologist names them all alike, from the series
whose count is sure. Here each held-out scan stands for the study's T2 series
(the **counting series**, labeled with ``--region auto`` as ``--count-from``
labels it, accepted when its own count from S1 is sure:
``carried_count.counting_series``) and its changes of ``benchmarks.robustness``
that keep the patient where it is (:data:`SERIES`) for the study's other
series. Each of those is labeled by the shipped lumbar model alone and with
the count carried from the counting series, and scored against the same
points as ``benchmarks.robustness`` (match radius 20 mm). Measured only,
nothing tuned on it. Writes a section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.lumbar import REPO, SHARED, flag_counts, flag_stats, git_commit, held_out_truth, write_section
from benchmarks.robustness import Labeled, _mm, _pct, conditions

#: The changes of ``benchmarks.robustness`` that stand for another sagittal series of the same study: other
#: contrasts, and other slice grids (a thick-slice 2D stack, an oblique one) read through DICOM, the patient where
#: they were.
SERIES = ("t1-like", "t1-like-dark-air", "stir-like", "thick-slab", "oblique-dicom")
#: How each series is labeled: alone over every scan, alone over the scans whose counting series was accepted, and
#: with the count carried from it.
HOW = ("alone, every scan", "alone, counting series accepted", "count carried")


@dataclass(frozen=True)
class Counted:
    """A labeler that names every volume with the count carried from one counting series."""

    labeler: object
    counting: object

    def label(self, volume):
        return self.labeler.label(volume, counting=self.counting)


def counting_series_of(labeler, cases: list[str]) -> tuple[dict[str, object], list[str]]:
    """(case -> its counting series, for the cases accepted; why each other case was refused)."""
    from spinelabel.carried_count import counting_series
    from spinelabel.errors import SpinelabelError
    from spinelabel.io import load_image

    accepted, refused = {}, []
    for case in cases:
        loaded = load_image([SHARED / case / "image.nii.gz"])
        try:
            accepted[case] = counting_series(labeler.label(loaded.volume), loaded)
        except SpinelabelError as exc:
            refused.append(f"{case}: {str(exc).split(': ', 1)[-1]}")
    return accepted, refused


def run(seed: int) -> tuple[list[str], dict[str, object], list[str]]:
    """The table rows, the accepted counting series and the refusals."""
    from spinelabel.annotations import ScanAnnotation
    from spinelabel.evaluation import evaluate
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler, make_labeler

    cases, gt, _ = held_out_truth()
    lumbar = Labeler.load("lumbar")
    counting, refused = counting_series_of(make_labeler("auto"), cases)
    rows = []
    with tempfile.TemporaryDirectory(prefix="spinelabel-study-") as tmp:
        changes = conditions(Path(tmp), seed)
        for name in SERIES:
            runs = {how: (Labeled(), []) for how in HOW}
            for case in cases:
                volume, points = changes[name](load_image([SHARED / case / "image.nii.gz"]).volume,
                                               dict(gt[case].points), case)
                truth = ScanAnnotation(case, None, points)
                for how, labeler in ((HOW[0], lumbar), (HOW[1], lumbar), (HOW[2], Counted(lumbar, counting.get(case)))):
                    if how == HOW[0] or case in counting:
                        runs[how][0].add(case, labeler, volume)
                        runs[how][1].append(truth)
            for how, (labeled, truth) in runs.items():
                rep = evaluate(labeled.preds, truth)
                shifted = [r.scan_id for r in rep.per_scan if r.mislabeled]
                failures = "; ".join(labeled.failures + [f"{s} mislabeled" for s in shifted]) or "—"
                rows.append(f"| {name} | {how} | {_pct(rep.sensitivity)} | {_pct(rep.precision)} | "
                            f"{_mm(rep.error_mean_mm)} | {_pct(rep.identification_rate)} | "
                            f"{rep.n_scans_correct}/{rep.n_scans} | {failures} | "
                            f"{flag_stats(counts=flag_counts(rep, labeled.conf, warned=labeled.warned))} |")
                print(rows[-1], flush=True)
    return rows, counting, refused


def main(argv: list[str] | None = None) -> int:
    """Label the held-out scans' other series alone and counted from the scan, and write the RESULTS section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="as benchmarks.robustness --seed (the random contrasts)")
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)
    rows, counting, refused = run(args.seed)
    body = f"""## Lumbar: the other series of a study counted from its T2 series (`--count-from`, count from S1)

- command: `python -m benchmarks.count_from_study {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the 28 held-out scans, each the T2 series of a study (the counting series, `--region auto`) and, changed as
  `benchmarks/robustness.py` changes them, the study's other series ({', '.join(SERIES)}); module docstring of
  `benchmarks/count_from_study.py`; shipped models; the ground truth of `benchmarks.robustness`; match radius
  20 mm. Measured only, nothing tuned on it.
- the `alone, every scan` rows repeat `benchmarks.robustness`'s rows of the same change, but for stir-like: its
  noise is drawn from the seed in another order here (robustness draws bias-noise's first).
- counting series accepted (its own count from S1 sure): {len(counting)} of {len(counting) + len(refused)};
  refused: {'; '.join(refused) or '—'}

| series | labeled | sensitivity | precision | mean error | identification | scans right | failures, mislabeled scans | confidence as a flag |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section(args.results, "count-from-study", body)
    print(body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
