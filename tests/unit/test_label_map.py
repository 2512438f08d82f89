"""The NIfTI point-label map (``io.outputs.label_map``, ``spinelabel label --label-map``): data *and* affine."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from spinelabel import anatomy, pipeline
from spinelabel.cli import main
from spinelabel.geometry import Volume, reorient
from spinelabel.io.nifti import save_nifti
from spinelabel.io.outputs import label_map
from spinelabel.results import LabelResult, Vertebra
from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config


def _oblique_lps_volume() -> Volume:
    """8 x 10 x 12 voxels, 0.7 x 0.7 x 4 mm, axes L, P, S turned 10 deg about S, offset origin."""
    t = np.radians(10.0)
    turn = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = turn @ np.diag([-0.7, -0.7, 4.0])
    affine[:3, 3] = [12.0, -30.0, 5.0]
    return Volume(np.zeros((8, 10, 12), np.float32), affine)


def test_each_vertebra_is_its_verse_number_at_its_nearest_voxel_on_the_input_grid():
    volume = _oblique_lps_volume()
    voxels = {"L4": np.array([2.2, 3.6, 4.4]), "L5": np.array([5.0, 6.49, 7.51]), "S1": np.array([7.4, 9.3, 11.45])}
    result = LabelResult("lumbar", "m", "1", [
        Vertebra(lv, volume.voxel_to_world(ijk), ijk, 0.9) for lv, ijk in voxels.items()
    ])
    out = label_map(result, volume)
    assert out.shape == volume.shape and out.data.dtype == np.uint8
    np.testing.assert_array_equal(out.affine, volume.affine)
    assert out.data[2, 4, 4] == anatomy.VERSE_ID["L4"] == 23
    assert out.data[5, 6, 8] == anatomy.VERSE_ID["L5"]
    assert out.data[7, 9, 11] == anatomy.VERSE_ID["S1"] == 26  # 11.45 rounds inside the last slice
    assert np.count_nonzero(out.data) == 3


def test_a_centre_just_outside_the_grid_is_kept_on_its_edge():
    volume = _oblique_lps_volume()
    result = LabelResult("lumbar", "m", "1", [Vertebra("S1", np.zeros(3), np.array([-0.4, 4.0, 11.6]), 0.9)])
    assert label_map(result, volume).data[0, 4, 11] == anatomy.VERSE_ID["S1"]


@pytest.fixture
def blob_labeler(monkeypatch):
    labeler = pipeline.Labeler(dummy_config(), BlobNet())
    monkeypatch.setattr(pipeline, "make_labeler", lambda *args, **kwargs: labeler)
    return labeler


def _blob_nifti(path) -> Volume:
    """A blob spine in PIL voxel order (not RAS), written as NIfTI."""
    volume = reorient(blob_spine()[0], "PIL")
    save_nifti(volume, path)
    return volume


def test_label_writes_a_map_that_overlays_the_input_and_matches_the_json(tmp_path, blob_labeler):
    volume = _blob_nifti(tmp_path / "scan.nii.gz")
    code = main(["label", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "r.json"),
                 "--label-map", str(tmp_path / "r.labels.nii.gz"), "-q"])
    assert code == 0
    written = nib.load(tmp_path / "r.labels.nii.gz")
    np.testing.assert_allclose(written.affine, nib.load(tmp_path / "scan.nii.gz").affine)
    data = np.asarray(written.dataobj)
    assert data.shape == volume.shape
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["vertebrae"]) >= 3
    for v in doc["vertebrae"]:
        assert data[tuple(np.rint(v["voxel"]).astype(int))] == v["verse_id"]
        centre = nib.affines.apply_affine(written.affine, np.rint(v["voxel"]))
        assert np.linalg.norm(centre - np.asarray(v["position_mm"])) < 1.0  # the voxel lies on the labeled point
    assert np.count_nonzero(data) == len(doc["vertebrae"])


def test_a_label_map_name_that_is_not_nifti_is_one_line_and_writes_nothing(tmp_path, blob_labeler, capsys):
    _blob_nifti(tmp_path / "scan.nii.gz")
    code = main(["label", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "r.json"),
                 "--label-map", str(tmp_path / "r.png")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and ".nii or .nii.gz" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_batch_mode_writes_a_map_per_scan(tmp_path, blob_labeler):
    _blob_nifti(tmp_path / "a.nii.gz")
    _blob_nifti(tmp_path / "b.nii.gz")
    code = main(["label", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--output-dir", str(tmp_path / "out"),
                 "--label-maps", "-q"])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a.json", "a.labels.nii.gz", "b.json", "b.labels.nii.gz"]
    for name in "ab":
        doc = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        ids = np.asarray(nib.load(tmp_path / "out" / f"{name}.labels.nii.gz").dataobj)
        assert sorted(ids[ids > 0].tolist()) == sorted(v["verse_id"] for v in doc["vertebrae"])


def test_a_dicom_series_gets_a_map_on_its_own_grid(tmp_path, blob_labeler):
    from spinelabel.io.dicom import load_dicom
    from spinelabel.io.dicom_write import write_dicom_series

    write_dicom_series(reorient(blob_spine()[0], "PIL"), tmp_path / "series")
    code = main(["label", str(tmp_path / "series"), "-o", str(tmp_path / "r.json"),
                 "--label-map", str(tmp_path / "r.nii"), "-q"])
    assert code == 0
    source, _ = load_dicom(tmp_path / "series")
    written = nib.load(tmp_path / "r.nii")
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
    assert written.shape == source.shape
    data = np.asarray(written.dataobj)
    for v in json.loads((tmp_path / "r.json").read_text())["vertebrae"]:
        assert data[tuple(np.rint(v["voxel"]).astype(int))] == v["verse_id"]
