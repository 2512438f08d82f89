"""A lumbar series counted from C2 on another series of the patient (``spinelabel label --count-from``), on phantoms.

Usage (repository root)::

    python -m benchmarks.count_from [--n 20] [--seed 3]

No real study with two sagittal series of one patient is at hand, so each case
is a synthetic whole-spine phantom (``spinelabel synth --region whole``: exact
labels, random contrast, voxel order and spacing, transitional anatomy in some)
cut into two series that share its world frame, as two series of one study do:

- the **counting series**, from the skull base down to the centre of L2
  (labeled with ``--region auto``, as ``--count-from`` does);
- the **lumbar series**, from the centre of T10 down, in two fields of view:
  ``S1 in view`` (to the phantom's lower edge) and ``S1 out of view`` (cut
  half a millimetre below the centre of L5, which is half cut).

and, for the three stations of a whole-spine study, a **neck series** (skull
base to the centre of T6) and a **thoracic series** (centre of T2 to centre of
L2) between the neck and the lumbar series: the neck does not reach the lumbar
series, the thoracic series counted from the neck does (``--count-from NECK
--count-from THORACIC``).

Each lumbar series is labeled by the shipped lumbar model alone, with the
count carried from the counting series, and with the count carried through
the thoracic series (each refused when a counting series' own count is in
doubt: ``carried_count.counting_series``). Scored against the phantom's
points (``MATCH_MM``): a name is wrong when the nearest true centre within
reach has another name; a vertebra is missed when its centre lies in the series
and nothing is named within reach; a scan is right when nothing is wrong or
missed. A phantom with a T13 or L6 is right only with that name, which a count
from C2 alone cannot give. Measured only, nothing tuned on it. Writes a section
of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.lumbar import REPO, git_commit, write_section

#: A named vertebra is matched to the nearest true centre within this distance (mm): under half the shortest
#: lumbar step of a phantom (a cut L5 is found at the centre of its visible half, up to ~12 mm off).
MATCH_MM = 14.0
#: The two fields of view of the lumbar series: (name, its lower edge as the height (world z, mm) of which points).
FIELDS = ("S1 in view", "S1 out of view")
#: The ways each lumbar series is labeled and counted: alone over every phantom, alone over the phantoms whose
#: counting series was accepted, with the count carried from it, and the same two for the chain of neck and
#: thoracic series.
HOW = ("alone, every phantom", "alone, counting series accepted", "count carried", "alone, chain accepted",
       "count carried through the thoracic series")


@dataclass
class Tally:
    """One field of view and one way of labeling: what came out over the cases."""

    right: int = 0
    labeled: int = 0
    wrong_names: int = 0
    wrong_sure_unwarned: int = 0  # wrong names at 0.5 or above in a scan without a `count` code
    sure_right: int = 0  # right names at 0.5 or above
    names: int = 0
    wrong_cases: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # labelings refused (the carried count reached no vertebra)


def cut(volume, low_mm: float, high_mm: float):
    """The slab of ``volume`` between two heights (world z, mm), cut along the array axis nearest to z."""
    from spinelabel.geometry import Volume

    axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    centre = (np.array(volume.data.shape, float) - 1) / 2  # heights measured through the volume's centre
    steps = np.arange(volume.data.shape[axis])
    z = volume.affine[2, axis] * (steps - centre[axis]) + volume.affine[2, :3] @ centre + volume.affine[2, 3]
    keep = np.flatnonzero((z >= low_mm) & (z <= high_mm))
    index = [slice(None)] * 3
    index[axis] = slice(int(keep.min()), int(keep.max()) + 1)
    shift = np.zeros(3)
    shift[axis] = keep.min()
    affine = volume.affine.copy()
    affine[:3, 3] += volume.affine[:3, :3] @ shift
    return Volume(np.ascontiguousarray(volume.data[tuple(index)]), affine)


def score(result, points: dict[str, np.ndarray], low_mm: float, high_mm: float) -> tuple[list[str], list[str]]:
    """(wrong names as ``GOT->TRUE``, missed true names) of a result against the phantom's points in a slab."""
    got = [(v.label, np.asarray(v.position_mm, float)) for v in result.vertebrae]
    wrong = []
    for label, pos in got:
        dist = {lv: float(np.linalg.norm(pos - p)) for lv, p in points.items()}
        true = min(dist, key=dist.get)
        if dist[true] <= MATCH_MM and true != label:
            wrong.append(f"{label}->{true}")
    inside = [lv for lv, p in points.items() if low_mm < p[2] < high_mm]
    missed = [lv for lv in inside if not any(np.linalg.norm(pos - points[lv]) <= MATCH_MM for _, pos in got)]
    return wrong, missed


def add(tally: Tally, case: str, result, points, low_mm: float, high_mm: float) -> None:
    """Count one labeled lumbar series into ``tally``."""
    from spinelabel.results import LOW_CONFIDENCE
    from spinelabel.warning_codes import count_at_risk

    wrong, missed = score(result, points, low_mm, high_mm)
    tally.labeled += 1
    tally.names += len(result.vertebrae)
    tally.wrong_names += len(wrong)
    wrong_labels = {w.split("->")[0] for w in wrong}
    sure = [v for v in result.vertebrae if v.confidence >= LOW_CONFIDENCE]
    tally.sure_right += sum(v.label not in wrong_labels for v in sure)
    if not count_at_risk(result.warnings):
        tally.wrong_sure_unwarned += sum(v.label in wrong_labels for v in sure)
    if wrong or missed:
        tally.wrong_cases.append(f"{case} ({' '.join(wrong + [f'missed {m}' for m in missed])})")
    else:
        tally.right += 1


def run(n: int, seed: int) -> tuple[dict[tuple[str, str], Tally], dict[str, list[str]], list[str]]:
    """Label every case; (tallies by (field, ``HOW``), refused counting series and chains, transitional cases)."""
    from spinelabel.io import LoadedImage
    from spinelabel.pipeline import label_loaded, make_labeler
    from spinelabel.synthetic import random_spec, synthesize_spine

    lumbar, auto = make_labeler("lumbar"), make_labeler("auto")
    tallies = {(f, how): Tally() for f in FIELDS for how in HOW}
    refused: dict[str, list[str]] = {"counting": [], "chain": []}
    variants = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            case = f"synth-whole-{i:04d}"
            rng = np.random.default_rng([seed, i])
            volume, points = synthesize_spine(random_spec(rng, "whole"), rng)
            if {"T13", "L6"} & set(points):
                variants.append(case)
            z = {lv: float(p[2]) for lv, p in points.items()}
            counts = counting_series_of(volume, z, Path(tmp) / case, auto, refused)
            edges = {"S1 in view": -np.inf, "S1 out of view": z["L5"] + 0.5}
            for name, low in edges.items():
                loaded = LoadedImage(cut(volume, low, z["T10"]), f"{case} {name}", "nifti")
                alone = label_loaded(lumbar, loaded)
                add(tallies[(name, HOW[0])], case, alone, points, low, z["T10"])
                for (alone_how, how), counting in zip(((HOW[1], HOW[2]), (HOW[3], HOW[4])), counts):
                    if counting is not None:
                        add(tallies[(name, alone_how)], case, alone, points, low, z["T10"])
                        add_carried(tallies[(name, how)], case, lumbar, loaded, counting, points, low, z["T10"])
    return tallies, refused, variants


def counting_series_of(volume, z: dict[str, float], stem: Path, auto, refused: dict[str, list[str]]) -> tuple:
    """(the counting series, the neck -> thoracic chain) of a phantom, each None when refused (``refused`` says why)."""
    from spinelabel.errors import SpinelabelError
    from spinelabel.io.nifti import save_nifti
    from spinelabel.pipeline import read_counting_series

    out = []
    for what, slabs in (("counting", (("upper", z["L2"], np.inf),)),
                        ("chain", (("neck", z["T6"], np.inf), ("thoracic", z["L2"], z["T2"])))):
        counting = None
        try:
            for part, low, high in slabs:
                path = stem.with_name(f"{stem.name}-{part}.nii.gz")
                save_nifti(cut(volume, low, high), path)
                counting = read_counting_series([path], labeler=auto, counting=counting)
        except SpinelabelError as exc:
            counting = None
            refused[what].append(f"{stem.name}: {part}: {str(exc).split(': ', 1)[-1]}")
        out.append(counting)
    return tuple(out)


def add_carried(tally: Tally, case: str, labeler, loaded, counting, points, low_mm: float, high_mm: float) -> None:
    """Label ``loaded`` with the count carried from ``counting`` into ``tally`` (no overlap: a refusal)."""
    from spinelabel.errors import SpinelabelError
    from spinelabel.pipeline import label_loaded

    try:
        carried = label_loaded(labeler, loaded, counting)
    except SpinelabelError as exc:
        tally.refused.append(f"{case}: {str(exc).split(': ', 1)[-1]}")
        return
    add(tally, case, carried, points, low_mm, high_mm)


def table(tallies: dict[tuple[str, str], Tally]) -> str:
    """The markdown table of the tallies."""
    rows = ["| lumbar series | labeled | scans right | names | wrong names | right names at 0.5 or above | "
            "wrong names at 0.5 or above without a `count` code | wrong scans | refused |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (name, how), t in tallies.items():
        listing = "; ".join(t.wrong_cases) or "—"
        rows.append(f"| {name}, {how} | {t.labeled} | {t.right}/{t.labeled} | {t.names} | {t.wrong_names} | "
                    f"{t.sure_right} | {t.wrong_sure_unwarned} | {listing} | {'; '.join(t.refused) or '—'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Label the phantom pairs alone and with the carried count, and write the RESULTS section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="phantoms")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = ap.parse_args(argv)
    tallies, refused, variants = run(args.n, args.seed)
    accepted = {what: args.n - len(r) for what, r in refused.items()}
    body = f"""## Lumbar: a series counted from C2 on another series of the patient (`--count-from`, phantoms)

- command: `python -m benchmarks.count_from {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- {args.n} synthetic whole-spine phantoms (`spinelabel synth --region whole --seed {args.seed}`), each cut into a
  counting series (skull base to the centre of L2), a lumbar series (T10 down; S1 in view, or cut half a
  millimetre below the centre of L5), and the first two stations of a three-station study: a neck series (skull
  base to the centre of T6) and a thoracic series (centres of T2 to L2), counted from the neck; one world frame
  (module docstring of `benchmarks/count_from.py`); shipped models; match radius {MATCH_MM:g} mm. Phantoms only:
  no real study with two sagittal series was at hand. Measured only, nothing tuned on it.
- counting series accepted: {accepted['counting']} of {args.n}; refused: {'; '.join(refused['counting']) or '—'}
- neck -> thoracic chains accepted: {accepted['chain']} of {args.n}; refused: {'; '.join(refused['chain']) or '—'}
- phantoms with a transitional vertebra (T13 or L6): {', '.join(variants) or '—'}

{table(tallies)}
"""
    write_section(args.results, "count-from", body)
    print(body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
