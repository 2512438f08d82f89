"""A count carried from another series (``carried_count``): which candidates take a name, and which series may give one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spinelabel.carried_count import (
    CARRY_FRACTION, CountingSeries, carried_warnings, carry_names, check_same_frame, counting_series, reach_mm,
)
from spinelabel.errors import InputError
from spinelabel.geometry import Volume
from spinelabel.io import LoadedImage
from spinelabel.io.dicom import DicomSeriesInfo
from spinelabel.labeling_params import Candidate, LabeledVertebra, LabelingResult
from spinelabel.results import LabelResult, Vertebra
from spinelabel.warning_codes import LabelWarning

NAMES = ("C2", "C3", "C4", "C5")
STEP_MM = 16.0


def _series(names=NAMES, step=STEP_MM) -> CountingSeries:
    return CountingSeries("upper.nii.gz", tuple(names), np.array([[0.0, 0.0, -step * k] for k in range(len(names))]))


def _loaded(source: str = "x.nii.gz", frame: str | None = None, patient: str = "P1") -> LoadedImage:
    volume = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4))
    if frame is None:
        return LoadedImage(volume, source, "nifti")
    info = DicomSeriesInfo("1.2.3", "1.2", frame, ["1.2.3.1"], "1.2.840.10008.5.1.4.1.1.4", "MR", "", patient,
                           files=[Path("a.dcm")])
    return LoadedImage(volume, source, "dicom", info)


def _result(labels, confidence=0.9, warnings=()) -> LabelResult:
    vertebrae = [Vertebra(lv, np.array([0.0, 0.0, -STEP_MM * k]), np.zeros(3), confidence) for k, lv in enumerate(labels)]
    return LabelResult("whole", "cervical", "1", vertebrae, list(warnings))


def test_a_candidate_takes_the_name_of_a_counted_vertebra_within_reach_only():
    series = _series()
    assert reach_mm(series.positions) == pytest.approx([CARRY_FRACTION * STEP_MM] * 4)
    near = Candidate(np.array([1.0, 2.0, -STEP_MM - 3.0]), 0.9)  # 3.7 mm from C3
    between = Candidate(np.array([0.0, 0.0, -1.5 * STEP_MM]), 0.9)  # half-way between C3 and C4
    beyond = Candidate(np.array([0.0, 0.0, -4 * STEP_MM]), 0.9)  # one step below the last counted vertebra
    assert [c.carried_level for c in carry_names([near, between, beyond], series)] == ["C3", None, None]


def test_a_counting_series_must_be_sure_of_its_count_and_name_its_anchor():
    series = counting_series(_result(("C1", "C2", "C3", "C4")), _loaded())
    assert series.names == ("C1", "C2", "C3", "C4") and series.positions.shape == (4, 3)
    # names below the flag threshold are not carried
    mixed = _result(("C2", "C3", "C4", "C5"))
    mixed.vertebrae[-1] = Vertebra("C5", np.zeros(3), np.zeros(3), 0.3)
    assert counting_series(mixed, _loaded()).names == ("C2", "C3", "C4")
    doubt = LabelWarning("anchor-unconfirmed", "C2 labeled, but ...")
    with pytest.raises(InputError, match=r"count is in doubt \(anchor-unconfirmed\)"):
        counting_series(_result(("C2", "C3", "C4"), warnings=[doubt]), _loaded())
    assert series.anchor == "C2"
    # a lumbar series counts from S1 up; a whole spine's count from C2 is preferred
    assert counting_series(_result(("L1", "L2", "L3", "L4", "L5", "S1")), _loaded()).anchor == "S1"
    assert counting_series(_result(("C2", "C3", "C4", "T1", "L5", "S1")), _loaded()).anchor == "C2"
    with pytest.raises(InputError, match="names neither C2 nor S1"):
        counting_series(_result(("T10", "T11", "T12", "L1")), _loaded())
    with pytest.raises(InputError, match="transitional"):
        counting_series(_result(("C2", "C3", "T12", "T13", "L1")), _loaded())
    with pytest.raises(InputError, match="only 2 vertebra"):
        counting_series(_result(("C2", "C3")), _loaded())
    # a reader's warning (concern input) is no doubt about the count
    read = LabelWarning("irregular-spacing", "irregular slice spacing")
    assert counting_series(_result(("C2", "C3", "C4"), warnings=[read]), _loaded()).names == ("C2", "C3", "C4")


def test_a_series_that_took_a_carried_count_carries_it_on_without_naming_c2():
    """The thoracic station of a three-station study: counted from the neck, it counts the lumbar station."""
    neck = counting_series(_result(("C2", "C3", "C4")), _loaded("neck", frame="1.2.99", patient="P1"))
    carried = LabelWarning("count-carried", "level names counted from neck: ...")
    thoracic = _result(("T3", "T4", "T5", "T6"), warnings=[carried])
    chained = counting_series(thoracic, _loaded("thoracic.nii.gz"), neck)
    assert chained.names == ("T3", "T4", "T5", "T6") and chained.counted_from == ("neck",)
    assert chained.describe() == "thoracic.nii.gz (counted from neck)"
    # a NIfTI link keeps the frame its positions were matched in: a DICOM series of another frame is still refused
    assert (chained.frame_of_reference_uid, chained.patient_id) == ("1.2.99", "P1")
    with pytest.raises(InputError, match="another frame of reference"):
        check_same_frame(_loaded("lumbar", frame="1.2.77", patient="P1"), chained)
    # a link further on names the whole chain
    lumbar = counting_series(_result(("T11", "T12", "L1"), warnings=[carried]), _loaded("lumbar.nii.gz"), chained)
    assert lumbar.counted_from == ("neck", "thoracic.nii.gz")
    # with no sure count of its own, it may still pass the count on; a disagreement with a sure count of its own
    # or any other doubt stops it, and so does a count it did not take
    unconfirmed = LabelWarning("count-unconfirmed", "the names rest on the carried count alone ...")
    assert counting_series(_result(("T3", "T4", "T5"), warnings=[carried, unconfirmed]), _loaded(), neck).names[0] == "T3"
    for doubt in ("count-differs", "no-anchor"):
        with pytest.raises(InputError, match=rf"count is in doubt \({doubt}\)"):
            counting_series(_result(("T3", "T4", "T5"), warnings=[carried, LabelWarning(doubt, "...")]), _loaded(), neck)
    with pytest.raises(InputError, match="did not take the count of neck"):
        counting_series(_result(("T3", "T4", "T5")), _loaded(), neck)
    # without a carried count, count-unconfirmed is a doubt like any other (it cannot come alone, but is not let by)
    with pytest.raises(InputError, match="in doubt"):
        counting_series(_result(("C2", "C3", "C4"), warnings=[unconfirmed]), _loaded())


def test_positions_carry_over_only_within_one_frame_of_reference_and_patient():
    counting = counting_series(_result(("C2", "C3", "C4")), _loaded("upper", frame="1.2.99", patient="P1"))
    assert counting.frame_of_reference_uid == "1.2.99"
    check_same_frame(_loaded("lower", frame="1.2.99", patient="P1"), counting)
    check_same_frame(_loaded("lower.nii.gz"), counting)  # NIfTI: the user's pairing is trusted
    check_same_frame(_loaded("lower", frame="", patient=""), counting)  # tags left empty: trusted too
    with pytest.raises(InputError, match="another frame of reference"):
        check_same_frame(_loaded("lower", frame="1.2.77", patient="P1"), counting)
    with pytest.raises(InputError, match="another patient"):
        check_same_frame(_loaded("lower", frame="1.2.99", patient="P2"), counting)


def _labeling(pairs, variant=(), confidence=0.9) -> LabelingResult:
    return LabelingResult([LabeledVertebra(lv, i, np.zeros(3), confidence) for lv, i in pairs], variant, 1.0, 0.0, [])


def test_the_result_says_where_its_count_came_from_and_where_the_series_alone_differs():
    series = _series(("T10", "T11", "T12", "L1"), step=30.0)
    cands = [Candidate(np.array([0.0, 0.0, -30.0 * k]), 0.9, carried_level=lv) for k, lv in enumerate(("T10", "T11", None))]
    same = carried_warnings(series, cands, _labeling([("T10", 0), ("T11", 1), ("T12", 2)]),
                            _labeling([("T10", 0), ("T11", 1), ("T12", 2)]))
    assert [w.code for w in same] == ["count-carried"] and same[0].text.endswith("2 of its vertebrae lie on vertebrae "
                                                                              "found here, named T10, T11")
    differs = carried_warnings(series, cands, _labeling([("T10", 0), ("T11", 1), ("T12", 2)]),
                               _labeling([("T11", 0), ("T12", 1), ("L1", 2)]))
    assert [w.code for w in differs] == ["count-carried", "count-differs"]
    assert "3 vertebra(e) otherwise (T10 here, T11 alone; T11 here, T12 alone; T12 here, L1 alone)" in differs[1].text
    # the series alone names them otherwise, but none surely: no count of its own to disagree, the carried one alone
    unsure = carried_warnings(series, cands, _labeling([("T10", 0), ("T11", 1), ("T12", 2)]),
                              _labeling([("T11", 0), ("T12", 1), ("L1", 2)], confidence=0.45))
    assert [w.code for w in unsure] == ["count-carried", "count-unconfirmed"]
    assert "with no sure count of its own, would name 3 vertebra(e) otherwise at confidence below 0.5" in unsure[1].text
    with pytest.raises(InputError, match="none of its vertebrae .T10-L1. lies on a vertebra named here"):
        carried_warnings(series, cands, _labeling([("T12", 2)]), _labeling([("T12", 2)]))
    # reached but named at other places of the count: the names are the series' own, and the result says so
    refused = carried_warnings(series, cands, _labeling([("T11", 0), ("T12", 1)]), _labeling([("T11", 0), ("T12", 1)]))
    assert [w.code for w in refused] == ["count-differs"] and "was not taken" in refused[0].text
    assert "T11 here, T10 there; T12 here, T11 there" in refused[0].text


def test_a_carried_l1_on_a_t13_is_the_same_place_in_the_count():
    """The counting series calls the 20th vertebra L1; a T13 chain names it T13: that is the carried count, taken."""
    series = _series(("T11", "T12", "L1", "L2"), step=30.0)
    cands = [Candidate(np.array([0.0, 0.0, -30.0 * k]), 0.9, carried_level=lv) for k, lv in enumerate(series.names)]
    chain = _labeling([("T11", 0), ("T12", 1), ("T13", 2), ("L1", 3)], variant=("T13",))
    warnings = carried_warnings(series, cands, chain, chain)
    assert [w.code for w in warnings] == ["count-carried"] and warnings[0].text.endswith("named T11, T12, T13, L1")
    # a T13 chain that skips the T13 itself (missed) still counts its lumbar vertebrae one place lower
    skipped = _labeling([("L1", 0), ("L2", 1), ("L3", 2)], variant=("T13",))
    lumbar = [Candidate(np.zeros(3), 0.9, carried_level=lv) for lv in ("L2", "L3", "L4")]
    warnings = carried_warnings(series, lumbar, skipped, skipped)
    assert [w.code for w in warnings] == ["count-carried"] and warnings[0].text.endswith("named L1, L2, L3")
    # the reader's warnings about the counting series come with the count
    read = CountingSeries("folder/", series.names, series.positions, reader_codes=("series-chosen",))
    assert "folder/ (its reader: series-chosen):" in carried_warnings(read, cands, chain, chain)[0].text


def test_a_count_from_s1_is_carried_up_from_s1():
    """A lumbar counting series (anchor S1): its candidates take the names with their anchor, and an L6 chain that
    names its vertebrae at the same places counted up from S1 took the count."""
    lumbar = CountingSeries("t2/", ("L3", "L4", "L5", "S1"), np.array([[0.0, 0.0, -30.0 * k] for k in range(4)]),
                            anchor="S1")
    cands = carry_names([Candidate(p, 0.9) for p in lumbar.positions], lumbar)
    assert [(c.carried_level, c.carried_from) for c in cands] == [(lv, "S1") for lv in lumbar.names]
    l6 = _labeling([("L4", 0), ("L5", 1), ("L6", 2), ("S1", 3)], variant=("L6",))
    warnings = carried_warnings(lumbar, cands, l6, l6)
    assert [w.code for w in warnings] == ["count-carried"] and warnings[0].text.endswith("named L4, L5, L6, S1")
    # read as a count from C1 down, the same names would be a level off: not taken
    as_c2 = carried_warnings(replace(lumbar, anchor="C2"), cands, l6, l6)
    assert [w.code for w in as_c2] == ["count-differs"] and "was not taken" in as_c2[0].text


def test_a_counting_series_that_cannot_be_read_is_named_with_its_own_options(tmp_path, write_two_stacks):
    """The reader's advice names the counting series' options (--count-from-stack), not the labeled series'."""
    from spinelabel.pipeline import read_counting_series

    write_two_stacks(tmp_path / "dixon")
    with pytest.raises(InputError) as refused:
        read_counting_series([tmp_path / "dixon"])
    text = str(refused.value)
    assert text.startswith(f"counting series {tmp_path / 'dixon'}: ") and "--count-from-stack" in text
    assert " --stack" not in text
    empty = tmp_path / "empty--series--stack"  # option-like parts of a path in the reader's message stay as they are
    empty.mkdir()
    with pytest.raises(InputError) as refused:
        read_counting_series([empty])
    assert str(refused.value).count(str(empty)) == 2, refused.value
