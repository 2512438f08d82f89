"""Unit tests of reading and writing point annotations (synthetic files, fast)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from spinelabel.annotations import ScanAnnotation, load_annotations, save_annotations_csv
from spinelabel.errors import InputError, OutputError


def centroids_doc(case: str, labels=("L1", "L2", "L3"), **extra) -> dict:
    verts = []
    for i, lab in enumerate(labels):
        verts.append({"label": lab, "verse_id": 0, "voxel": [i, 0, 0], "world_mm": [1.0, -2.0, -35.0 * i]})
    return {"case": case, "vertebrae": verts, **extra}


def write_case(root: Path, case: str, doc: dict | None = None, image: bool = True) -> Path:
    folder = root / case
    folder.mkdir(parents=True)
    path = folder / "centroids.json"
    path.write_text(json.dumps(doc if doc is not None else centroids_doc(case)))
    if image:
        (folder / "image.nii.gz").write_bytes(b"")
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------- centroids.json


def test_centroids_json_file(tmp_path):
    p = write_case(tmp_path, "case-a", centroids_doc("other-name", labels=("L2", "L1", "l3")))
    (ann,) = load_annotations([p])
    assert isinstance(ann, ScanAnnotation)
    assert ann.scan_id == "case-a"  # the folder name, not the "case" field
    assert ann.image == p.parent / "image.nii.gz"
    assert list(ann.points) == ["L1", "L2", "L3"]  # cranial to caudal, normalised
    np.testing.assert_allclose(ann.points["L2"], [1.0, -2.0, 0.0])
    assert ann.points["L1"].shape == (3,)
    assert ann.duplicates == ()


@pytest.mark.parametrize(("vertebra", "outcome"), [
    ({"label": "L1", "verse_id": 20}, "L1"),
    ({"label": None, "verse_id": 22}, "L3"),  # a null label: named from the VerSe id
    ({"label": "L1", "verse_id": 0}, "L1"),  # a placeholder id is not checked
    ({"label": "L1", "verse_id": 5}, "disagree"),  # C5 by its id: which one is meant cannot be known
])  # fmt: skip
def test_centroids_label_and_verse_id(tmp_path, vertebra, outcome):
    doc = {"vertebrae": [{**vertebra, "world_mm": [0.0, 0.0, 0.0]}, {"label": "L4", "world_mm": [0.0, 0.0, -70.0]}]}
    path = tmp_path / "c" / "centroids.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    if outcome == "disagree":
        with pytest.raises(InputError, match='"label" L1 and "verse_id" 5 \\(C5\\) disagree'):
            load_annotations([path])
        return
    (ann,) = load_annotations([path])
    assert list(ann.points)[0] == outcome


def test_csv_image_paths_are_normalised(tmp_path):
    (tmp_path / "sub").mkdir()
    csv_path = tmp_path / "sub" / "labels.csv"
    csv_path.write_text("scan,label,x,y,z,image\ns1,L1,0,0,0,../../elsewhere/image.nii.gz\ns1,L2,0,0,-35,../../elsewhere/image.nii.gz\n")
    (ann,) = load_annotations([csv_path])
    assert ann.image == tmp_path.parent / "elsewhere" / "image.nii.gz"  # as a message would name it, no ".."


def test_centroids_json_without_image(tmp_path):
    p = write_case(tmp_path, "case-a", image=False)
    (ann,) = load_annotations([str(p)])
    assert ann.image is None


def test_other_json_name_uses_case_field(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps(centroids_doc("from-case")))
    assert load_annotations([p])[0].scan_id == "from-case"


def test_verse_id_when_label_missing(tmp_path):
    doc = {"vertebrae": [{"verse_id": 24, "world_mm": [0, 0, 0]}, {"verse_id": 26, "world_mm": [0, 0, -30]}]}
    p = write_case(tmp_path, "c", doc)
    assert list(load_annotations([p])[0].points) == ["L5", "S1"]


def test_folder_loads_all_sorted(tmp_path):
    for case in ("b-2", "a-1", "c-3"):
        write_case(tmp_path / "data", case)
    (tmp_path / "data" / "notes.json").write_text("{not even json")  # only centroids.json are read
    anns = load_annotations([tmp_path / "data"])
    assert [a.scan_id for a in anns] == ["a-1", "b-2", "c-3"]
    # a file reached twice (folder + file inside) is read once
    again = load_annotations([tmp_path / "data", tmp_path / "data" / "a-1" / "centroids.json"])
    assert len(again) == 3


def test_duplicate_label_keeps_first(tmp_path):
    doc = centroids_doc("c", labels=("L1", "L2", "L2", "L3", "l1"))
    p = write_case(tmp_path, "c", doc)
    (ann,) = load_annotations([p])
    assert list(ann.points) == ["L1", "L2", "L3"]
    assert ann.duplicates == ("L1", "L2")
    np.testing.assert_allclose(ann.points["L2"], [1.0, -2.0, -35.0])  # the first L2 (index 1)
    np.testing.assert_allclose(ann.points["L1"], [1.0, -2.0, 0.0])


def _assert_one_line_error(p, message: str) -> None:
    """Loading ``p`` fails with one line that names the file and says ``message``."""
    with pytest.raises(InputError) as e:
        load_annotations([p])
    msg = str(e.value)
    assert message in msg
    assert str(p) in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "content, message",
    [
        ("{oops", "not valid JSON"),
        ("[1]", "expected a JSON object"),
        (json.dumps({"case": "c"}), "no \"vertebrae\" list"),
        (json.dumps({"vertebrae": []}), "\"vertebrae\" is empty"),
        (json.dumps({"vertebrae": ["L1"]}), "vertebra #1: expected an object"),
        (json.dumps({"vertebrae": [{"world_mm": [0, 0, 0]}]}), "vertebra #1: no \"label\""),
        (json.dumps({"vertebrae": [{"label": "L1", "world_mm": [0, 0, 0]}, {"label": "Q7", "world_mm": [0, 0, 0]}]}),
         "vertebra #2: unknown vertebra label 'Q7'"),
        (json.dumps({"vertebrae": [{"label": "L1", "world_mm": [0, 0]}]}), "vertebra #1 (L1): \"world_mm\" must be a list of 3"),
        (json.dumps({"vertebrae": [{"label": "L1", "world_mm": [0, "abc", 0]}]}), "vertebra #1 (L1): coordinate y is not a number: 'abc'"),
        (json.dumps({"vertebrae": [{"verse_id": 99, "world_mm": [0, 0, 0]}]}), "vertebra #1: unknown VerSe id 99"),
    ],
)
def test_bad_centroids_json(tmp_path, content, message):
    folder = tmp_path / "c"
    folder.mkdir()
    p = folder / "centroids.json"
    p.write_text(content)
    _assert_one_line_error(p, message)


def test_missing_source_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_annotations([tmp_path / "missing.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no centroids.json found"):
        load_annotations([tmp_path / "empty"])
    other = tmp_path / "labels.txt"
    other.write_text("x")
    with pytest.raises(InputError, match="not an annotation file"):
        load_annotations([other])


# ----------------------------------------------------------------- CSV


def test_csv_basic_with_image_and_grouping(tmp_path):
    p = write_csv(
        tmp_path / "ann.csv",
        "scan,label,x,y,z,image\n"
        "s1,L2,0,0,-35,imgs/s1.nii.gz\n"
        "s2, l 1 ,5,6,7,\n"
        "s1,L1,0,0,0,imgs/s1.nii.gz\n"
        "\n"
        "s1,L2,9,9,9,\n",
    )
    anns = load_annotations([p])
    assert [a.scan_id for a in anns] == ["s1", "s2"]
    s1, s2 = anns
    assert list(s1.points) == ["L1", "L2"]
    np.testing.assert_allclose(s1.points["L2"], [0, 0, -35])  # the first L2 is kept
    assert s1.duplicates == ("L2",)
    assert s1.image == tmp_path / "imgs" / "s1.nii.gz"
    assert s2.image is None
    np.testing.assert_allclose(s2.points["L1"], [5, 6, 7])


def test_csv_header_tolerates_case_spaces_bom_and_extra_columns(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes("\ufeffScan, Label ,X,Y,Z,comment\ns,T12,1,2,3,hello\n".encode("utf-8"))
    (ann,) = load_annotations([p])
    assert ann.scan_id == "s" and list(ann.points) == ["T12"] and ann.image is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty CSV file"),
        ("scan,label,x,y\ns,L1,0,0\n", "line 1: missing column(s) z"),
        ("case,level,x,y,z\n", "missing column(s) scan, label"),
        ("scan,label,x,y,z\n", "no annotation rows"),
        ("scan,label,x,y,z\ns,L1,0,0,0\ns,L2,0,abc,0\n", "line 3 (s L2): coordinate y is not a number: 'abc'"),
        ("scan,label,x,y,z\ns,L1,0,0,nan\n", "line 2 (s L1): coordinate z is not finite"),
        ("scan,label,x,y,z\ns,L1,0,0,0\ns,disc,0,0,0\n", "line 3: unknown vertebra label 'disc'"),
        ("scan,label,x,y,z\ns,L9,0,0,0\n", "line 2: unknown vertebra label 'L9'"),
        ("scan,label,x,y,z\ns,L4\u20135,0,0,0\n", "line 2: unknown vertebra label 'L4\u20135' (a second number after"),
        ("scan,label,x,y,z\n,L1,0,0,0\n", "line 2: empty scan id"),
        ("scan,label,x,y,z\ns,L1,0,0\n", "line 2 (s L1): coordinate z is not a number"),
        ("scan,label,x,y,z,image\ns,L1,0,0,0,a.nii\ns,L2,0,0,0,b.nii\n", "line 3: scan 's' has two different images"),
        ("scan,label,x,y,z,series\ns,L1,0,0,0,1.2.3\ns,L2,0,0,0,1.2.4\n", "line 3: scan 's' has two different series"),
        ("scan,label,x,y,z,frame\ns,L1,0,0,0,voxel\n", "line 2: frame 'voxel' is not one of RAS, LPS"),
        ("scan,label,x,y,z,frame\ns,L1,0,0,0,LPS\ns,L2,0,0,-30,\n", "line 3: scan 's' has two different frames ('LPS' and 'RAS')"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    p = write_csv(tmp_path / "bad.csv", text)
    _assert_one_line_error(p, message)


def test_csv_frame_column_converts_lps_to_ras(tmp_path):
    # LPS is DICOM's patient frame (what a PACS exports): x and y change sign; RAS is the default, also when blank
    p = write_csv(
        tmp_path / "f.csv",
        "scan,label,x,y,z,frame\n"
        "a,L3,-2.5,31.0,-80.0,LPS\n"
        "a,L4,-3.0,35.0,-113.0,lps\n"
        "b,L3,2.5,-31.0,-80.0,\n"
        "b,L4,3.0,-35.0,-113.0,RAS\n",
    )
    by_scan = {a.scan_id: a for a in load_annotations([p])}
    assert set(by_scan) == {"a", "b"}
    np.testing.assert_allclose(by_scan["a"].points["L3"], [2.5, -31.0, -80.0])
    np.testing.assert_allclose(by_scan["a"].points["L4"], [3.0, -35.0, -113.0])
    for level in ("L3", "L4"):
        np.testing.assert_allclose(by_scan["a"].points[level], by_scan["b"].points[level])


def test_csv_series_given_once_per_scan_is_kept(tmp_path):
    p = write_csv(tmp_path / "s.csv", "scan,label,x,y,z,series\ns,L1,0,0,0,1.2.3\ns,L2,0,0,-30,\ns,L3,0,0,-60,1.2.3\n")
    (ann,) = load_annotations([p])
    assert ann.series_uid == "1.2.3"


def test_same_scan_in_two_sources_is_an_error(tmp_path):
    write_case(tmp_path / "data", "s1")
    p = write_csv(tmp_path / "more.csv", "scan,label,x,y,z\ns1,L4,0,0,0\n")
    with pytest.raises(InputError, match="'s1' is already annotated in"):
        load_annotations([tmp_path / "data", p])


# ----------------------------------------------------------------- save


def test_save_csv_round_trip(tmp_path):
    img = tmp_path / "images" / "a" / "image.nii.gz"
    anns = [
        ScanAnnotation("a", img, {"L1": np.array([0.1, -2.123456789, 3.0]), "L2": np.array([1e-7, 5.0, -35.5])}),
        ScanAnnotation("b, with comma", None, {"T12": np.array([1.0, 2.0, 3.0])}),
    ]
    out = tmp_path / "out" / "ann.csv"
    save_annotations_csv(anns, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "scan,label,x,y,z,image"
    assert lines[1].endswith(",../images/a/image.nii.gz")
    back = load_annotations([out])
    assert [a.scan_id for a in back] == ["a", "b, with comma"]
    assert back[0].image is not None
    assert os.path.normpath(back[0].image) == os.path.normpath(img)
    assert back[1].image is None
    for a, b in zip(anns, back):
        assert list(a.points) == list(b.points)
        for k in a.points:
            assert np.array_equal(a.points[k], b.points[k])  # exact floats
    # no temporary files left behind
    assert [p.name for p in out.parent.iterdir()] == ["ann.csv"]


def test_save_csv_without_images_has_no_image_column(tmp_path):
    out = tmp_path / "a.csv"
    save_annotations_csv([ScanAnnotation("s", None, {"L1": np.zeros(3)})], out)
    assert out.read_text().splitlines() == ["scan,label,x,y,z", "s,L1,0.0,0.0,0.0"]


def test_save_csv_is_atomic_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "a.csv"
    out.write_text("old\n")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputError, match="disk full"):
        save_annotations_csv([ScanAnnotation("s", None, {"L1": np.zeros(3)})], out)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


@pytest.mark.parametrize("text", ["L4-L5", "L4/5", "L4-5", "C5 - C6", "l5/s1", "Th11/12"])
def test_disc_labels_are_not_read_as_vertebrae(text):
    from spinelabel.anatomy import parse_level

    with pytest.raises(ValueError, match="disc"):
        parse_level(text)


@pytest.mark.parametrize("text", ["L1\\L2", "L2 L3", "L2,L3", "C7 T1"])
def test_a_text_naming_two_levels_is_not_read_as_the_first(text):
    from spinelabel.anatomy import parse_level

    with pytest.raises(ValueError, match="names more than one level"):
        parse_level(text)


@pytest.mark.parametrize("text", ["L4\u20135", "L4\u22125", "L4\u20145", "L4\\5", "L4,5", "L4 5", "L4+5", "L4 to 5",
                                  "L4.5", "T1 2", "l1 and 2"])
def test_a_second_number_after_the_level_is_not_read_as_the_first(text):
    """L4-5 with the en dash a word processor puts in, a typo such as "T1 2" for T12: read as L4 or T1 before."""
    from spinelabel.anatomy import parse_level

    with pytest.raises(ValueError, match="second number"):
        parse_level(text)


def test_a_row_longer_than_the_header_is_refused_not_cut(tmp_path):
    """A decimal comma (European spreadsheets) splits each number in two: the row used to be read as x=40, y=45,
    z=-131. An empty cell beyond the header (a trailing separator) is still fine."""
    from spinelabel.annotations import load_annotations

    good = write_csv(tmp_path / "ok.csv", "scan,label,x,y,z\nA,L1,40.5,45,-131,\n")
    np.testing.assert_allclose(load_annotations([good])[0].points["L1"], [40.5, 45.0, -131.0])
    bad = write_csv(tmp_path / "comma.csv", "scan,label,x,y,z\nA,L1,40,5,45,-131,69\n")
    with pytest.raises(InputError, match="line 2: 7 fields under a header of 5 .*decimal comma"):
        load_annotations([bad])


@pytest.mark.parametrize("text", ["D1", "D2 = 23.4 mm", "d12"])
def test_a_measurement_name_is_not_a_level(text):
    """Viewers name distance measurements D1, D2: never read as dorsal (thoracic) levels."""
    from spinelabel.anatomy import parse_level

    with pytest.raises(ValueError, match="not a vertebra label"):
        parse_level(text)


@pytest.mark.parametrize(("text", "why"), [
    ("L4 disc", "another structure"), ("L4 disk", "another structure"), ("L3 canal", "another structure"),
    ("L2 spinous process", "another structure"), ("L4 pedicle", "another structure"), ("S1 foramen", "another structure"),
    ("L5 nerve root", "another structure"), ("L3 lesion", "another structure"), ("S1 pars", "another structure"),
    ("T2 hyperintense", "signal or contrast"), ("T1 hypo", "signal or contrast"), ("T2*", "signal or contrast"),
    ("T2 FS", "signal or contrast"), ("T1 post gad", "signal or contrast"),
    ("L1: 23.4 mm", "a measurement"), ("L1 = 13.2", "a measurement"), ("T1 = 850 ms", "a measurement"),
    ("S1: 245 mm2", "a measurement"), ("L3 height 22 mm", "a measurement"),
    ("L1?", "uncertain"), ("L3 (?)", "uncertain"), ("S1 ?", "uncertain"),
])  # fmt: skip
def test_texts_that_name_no_vertebral_body_centre_are_refused(text, why):
    """A red team's vendor exports: "L4 disc" points on discs, "T2 hyperintense" lesion marks, "L1: 23.4 mm"
    measurement lines and "L3?" (what our own GSPS writes for an unsure label) were imported as vertebrae."""
    from spinelabel.anatomy import parse_level, reason

    with pytest.raises(ValueError) as exc:
        parse_level(text)
    assert why in reason(exc.value, text) and not reason(exc.value, text).endswith(repr(text))


@pytest.mark.parametrize(("text", "level"), [
    ("L3", "L3"), ("l 3", "L3"), ("L3 vertebra", "L3"), ("L-3", "L3"), ("t13", "T13"), ("T12 (last rib)", "T12"),
    ("Th12", "T12"), ("th 7", "T7"), ("L5 segment 2", "L5"), ("S1 2nd", "S1"), ("L3, 2nd reader", "L3"),
    ("C2 (axis)", "C2"), ("L1 fracture", "L1"), ("T12 compression fracture", "T12"), ("L4 vertebral body", "L4"),
    ("L5 (transitional)", "L5"), ("S1 (sacrum)", "S1"),
])  # fmt: skip
def test_clinician_label_text_is_normalised(text, level):
    from spinelabel.anatomy import parse_level

    assert parse_level(text) == level


def test_csv_scan_ids_that_look_like_formulas_are_escaped_and_read_back(tmp_path):
    from spinelabel.annotations import ScanAnnotation, load_annotations, save_annotations_csv

    anns = [ScanAnnotation(name, None, {"L1": np.array([1.0, -2.0, 3.0]), "L2": np.array([1.0, -2.0, -30.0])})
            for name in ("=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "plain")]
    out = tmp_path / "labels.csv"
    save_annotations_csv(anns, out)
    cells = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    back = load_annotations([out])
    assert [a.scan_id for a in back] == [a.scan_id for a in anns]
    np.testing.assert_allclose(back[0].points["L2"], [1.0, -2.0, -30.0])


def test_annotations_import_refuses_an_output_that_is_not_csv(tmp_path, capsys):
    from spinelabel.cli import main

    assert main(["annotations", "import", str(tmp_path), "-o", str(tmp_path / "labels.json")]) == 2
    assert "must end in .csv" in capsys.readouterr().err
    assert not (tmp_path / "labels.json").exists()
