"""Image input/output: NIfTI and DICOM round trips, series handling, bad inputs."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from spinelabel.errors import GeometryError, InputError
from spinelabel.geometry import Rescale, Volume, lps_to_ras
from spinelabel.io import LoadedImage, load_image
from spinelabel.io.dicom import ENHANCED_UNSUPPORTED, load_dicom
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.io.nifti import load_nifti, save_nifti
from spinelabel.warning_codes import LabelWarning

SHAPE = (9, 11, 6)  # (columns, rows, slices) in DICOM terms
MARK = (2, 7, 3)
#: Unit directions (RAS) of each array axis.
DIRECTIONS = {
    "PIR": np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float),  # sagittal as scanners store it
    "LPS": np.diag([-1.0, -1.0, 1.0]),  # axial as scanners store it
    "RAS": np.eye(3),
    "LAS": np.diag([-1.0, 1.0, 1.0]),  # left-handed (radiological NIfTI)
}


def _rotation(ax_deg: float, ay_deg: float) -> np.ndarray:
    """Rotation by ``ax_deg`` about x then ``ay_deg`` about y, shape (3, 3)."""
    a, b = np.deg2rad(ax_deg), np.deg2rad(ay_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def _affine(case: str, spacing=(0.7, 0.8, 3.5), origin=(-20.0, 35.5, 12.25)) -> np.ndarray:
    """Voxel -> RAS affine of a named orientation case."""
    if case == "oblique":
        linear = _rotation(10.0, 10.0) @ DIRECTIONS["PIR"]
    elif case == "sheared":  # slice axis not perpendicular to the slices (gantry-tilt-like)
        linear = DIRECTIONS["PIR"] + np.array([[0, 0, 0], [0, 0, 0.15], [0, 0, 0]])
    else:
        linear = DIRECTIONS[case]
    affine = np.eye(4)
    affine[:3, :3] = linear @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _volume(case: str = "PIR", shape=SHAPE, seed: int = 0) -> Volume:
    """Noise in [0, 100) with one bright voxel (1000) at ``MARK`` (clipped to the shape); float32."""
    data = np.random.default_rng(seed).uniform(0, 100, shape).astype(np.float32)
    data[tuple(min(m, n - 1) for m, n in zip(MARK, shape))] = 1000.0
    return Volume(data, _affine(case))


def _marked_world(vol: Volume) -> np.ndarray:
    return vol.voxel_to_world(np.unravel_index(np.argmax(vol.data), vol.shape))


def _flip_slices(vol: Volume) -> Volume:
    """The same image with array axis 2 reversed (same world position per voxel)."""
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, vol.shape[2] - 1
    return Volume(vol.data[:, :, ::-1], vol.affine @ flip)


# ----------------------------------------------------------------------------
# NIfTI


def test_nifti_round_trip(tmp_path: Path):
    vol = _volume("oblique")
    for name in ("a.nii", "b.nii.gz"):
        save_nifti(vol, tmp_path / name)
        back = load_nifti(tmp_path / name)
        assert back.data.dtype == np.float32
        np.testing.assert_array_equal(back.data, vol.data)
        np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii", "b.nii.gz"]  # no temporary files left


def test_nifti_squeezes_a_single_volume_4d(tmp_path: Path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6, 1)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "x.nii.gz")
    vol = load_nifti(tmp_path / "x.nii.gz")
    assert vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol.data, data[..., 0])


def test_nifti_replaces_some_non_finite_values_by_zero(tmp_path: Path):
    data = np.ones((4, 5, 6), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "x.nii")
    vol = load_nifti(tmp_path / "x.nii")
    assert vol.data[0, 0, 0] == 0 and vol.data[1, 1, 1] == 0 and vol.data.sum() == data.size - 2


@pytest.mark.parametrize(
    "data, error, message",
    [
        (np.full((4, 5, 6), np.nan, np.float32), InputError, "contains NaN/inf values"),
        (np.zeros((4, 5, 6, 2), np.float32), InputError, "4D image with 2 volumes"),
        (np.zeros((40, 50), np.float32), GeometryError, r"a 2D image \(one slice\): need a 3D sagittal stack of at least 3"),
        (np.zeros((40, 50, 1), np.float32), GeometryError, r"a 2D image \(one slice\)"),
        (np.zeros((200, 200, 2), np.float32), GeometryError, "only 2 slices: need a 3D sagittal stack of at least 3 slices"),
    ],
    ids=["all-nan", "4d", "2d", "single-slice", "two-slices"],
)
def test_nifti_bad_contents(tmp_path: Path, data, error, message):
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "x.nii.gz")
    with pytest.raises(error, match=message):
        load_image([tmp_path / "x.nii.gz"])


def test_nifti_truncated_file(tmp_path: Path):
    save_nifti(_volume(), tmp_path / "x.nii.gz")
    payload = (tmp_path / "x.nii.gz").read_bytes()
    (tmp_path / "x.nii.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(InputError, match="cannot read NIfTI file"):
        load_image([tmp_path / "x.nii.gz"])


# ----------------------------------------------------------------------------
# DICOM round trips


@pytest.mark.parametrize("case", ["PIR", "LPS", "oblique", "sheared"])
def test_dicom_round_trip_right_handed(tmp_path: Path, case: str):
    vol = _volume(case)
    write_dicom_series(vol, tmp_path / "dcm")
    loaded = load_image([tmp_path / "dcm"])
    assert loaded.kind == "dicom"
    np.testing.assert_allclose(loaded.volume.affine, vol.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.volume.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))
    assert loaded.volume.axcodes == vol.axcodes
    assert loaded.dicom is not None
    sheared = [w for w in loaded.dicom.warnings if w.code == "sheared-grid" and "sheared grid" in w.text]
    assert len(sheared) == (case == "sheared") and len(loaded.dicom.warnings) == len(sheared)


def test_dicom_round_trip_left_handed_flips_slices_only(tmp_path: Path):
    vol = _volume("LAS")
    assert np.linalg.det(vol.affine) < 0
    write_dicom_series(vol, tmp_path / "dcm")
    back, _ = load_dicom([tmp_path / "dcm"])
    expected = _flip_slices(vol)
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-4)
    np.testing.assert_allclose(back.real_data(), expected.data, atol=1e-3 * np.ptp(vol.data))


@pytest.mark.parametrize("case", ["PIR", "LPS", "oblique", "LAS"])
def test_marked_voxel_same_world_position_from_dicom_and_nifti(tmp_path: Path, case: str):
    vol = _volume(case)
    save_nifti(vol, tmp_path / "v.nii.gz")
    files = write_dicom_series(vol, tmp_path / "dcm")
    from_nifti = load_image([tmp_path / "v.nii.gz"]).volume
    from_dicom = load_image(files).volume
    np.testing.assert_allclose(_marked_world(from_dicom), _marked_world(from_nifti), atol=1e-4)
    np.testing.assert_allclose(_marked_world(from_dicom), vol.voxel_to_world(MARK), atol=1e-4)


def test_dicom_geometry_tags_follow_the_conventions(tmp_path: Path):
    vol = _volume("PIR", shape=(9, 11, 6))
    files = write_dicom_series(vol, tmp_path)
    ds = pydicom.dcmread(files[1])
    lps = lps_to_ras(vol.affine)
    assert (ds.Columns, ds.Rows) == (9, 11)
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.8, 0.7])  # [axis 1, axis 0]
    np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [0, 1, 0, 0, 0, -1], atol=1e-12)
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], lps[:3, 2] + lps[:3, 3])
    assert float(ds.SliceThickness) == pytest.approx(3.5)
    assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert files[0].read_bytes()[128:132] == b"DICM"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID", "ImageType"):
        assert ds.get(keyword), keyword


def test_dicom_positions_just_short_of_a_power_of_ten_fit_a_decimal_string(tmp_path: Path):
    """pydicom formats -9.99999999999999 as 17 characters ("-10.0000000000000"); DS allows 16."""
    affine = np.diag([0.7, 0.7, 4.4, 1.0])
    affine[:3, 3] = [9.99999999999999, 9.99999999999999, -9.99999999999999]  # LPS x, y negated: -9.99...
    files = write_dicom_series(Volume(np.zeros((4, 5, 3), np.float32), affine), tmp_path)
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pydicom warns on reading a DS longer than 16 characters
            ds = pydicom.dcmread(f)
            values = [*ds.ImagePositionPatient, ds.SliceLocation, *ds.PixelSpacing, ds.SliceThickness]
        assert all(len(str(v)) <= 16 for v in values)
    back, _ = load_dicom([tmp_path])
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)


def test_dicom_integer_data_are_stored_exactly(tmp_path: Path):
    data = np.random.default_rng(1).integers(-1000, 3000, SHAPE).astype(np.int16)
    vol = Volume(data, _affine("LPS"))
    write_dicom_series(vol, tmp_path)
    back, _ = load_dicom([tmp_path])
    np.testing.assert_array_equal(back.real_data(), data)


def test_dicom_shuffled_files_and_series_info(tmp_path: Path):
    vol = _volume("oblique")
    files = write_dicom_series(vol, tmp_path, patient_id="P42", series_description="T2 sag", study_uid="1.2.3.4")
    shuffled = list(files)
    random.Random(3).shuffle(shuffled)
    assert shuffled != files
    loaded = load_image(shuffled)
    np.testing.assert_allclose(loaded.volume.affine, vol.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.volume.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))
    info = loaded.dicom
    assert info is not None and info.files == files
    assert info.sop_instance_uids == [pydicom.dcmread(f).SOPInstanceUID for f in files]
    assert info.frame_numbers == [None] * len(files)
    assert (info.study_instance_uid, info.patient_id, info.series_description) == ("1.2.3.4", "P42", "T2 sag")
    assert info.modality == "MR" and info.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4"
    assert info.frame_of_reference_uid and info.warnings == []
    assert loaded.source == f"DICOM series {info.series_instance_uid} ({len(files)} files in {tmp_path})"


@pytest.mark.parametrize("lost", [[5], [2, 3], [1, 5]])
def test_dicom_missing_slices_are_filled_in_and_every_slice_keeps_its_place(tmp_path: Path, lost: list[int]):
    """Slices lost in transfer: each slice read stays at its own position, each missing one is interpolated."""
    vol = _volume("PIR", shape=(5, 6, 8))
    files = write_dicom_series(vol, tmp_path)
    for k in lost:
        files[k].unlink()
    back, info = load_dicom([tmp_path])
    assert back.shape == (5, 6, 8)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    kept = [k for k in range(8) if k not in lost]
    np.testing.assert_allclose(back.real_data()[:, :, kept], vol.data[:, :, kept], atol=0.1)
    for k in lost:  # between the nearest slices read on either side
        lo, hi = max(j for j in kept if j < k), min(j for j in kept if j > k)
        w = (k - lo) / (hi - lo)
        np.testing.assert_allclose(back.real_data()[:, :, k], (1 - w) * vol.data[:, :, lo] + w * vol.data[:, :, hi],
                                   atol=0.2)
    assert [w.code for w in info.warnings] == ["missing-slices"]
    assert f"{len(lost)} slice(s) missing" in info.warnings[0].text
    assert len(info.files) == len(kept)


def test_dicom_irregular_spacing_warns_and_uses_the_median(tmp_path: Path):
    """Steps that are not whole multiples of one step (no slice missing, an irregular grid): the median, warned."""
    vol = _volume("PIR", shape=(5, 6, 8))
    files = write_dicom_series(vol, tmp_path)
    ds = pydicom.dcmread(files[5])
    normal = np.cross(np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float))
    ds.ImagePositionPatient = list(np.asarray(ds.ImagePositionPatient, float) + 1.2 * normal)  # 1.2 mm off its place
    ds.save_as(files[5])
    back, info = load_dicom([tmp_path])
    assert back.shape == (5, 6, 8)
    assert [w.code for w in info.warnings] == ["irregular-spacing"]
    assert "irregular slice spacing" in info.warnings[0].text
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)  # median step = the true step
    np.testing.assert_allclose(back.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))  # each slice in its place


def test_enhanced_multiframe_round_trip(tmp_path: Path, write_enhanced_mr):
    vol = _volume("oblique")
    write_enhanced_mr(vol, tmp_path / "enhanced.dcm", tmp_path / "classic")
    back, info = load_dicom([tmp_path / "enhanced.dcm"])
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    np.testing.assert_allclose(back.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))
    assert info.frame_numbers == list(range(SHAPE[2], 0, -1))
    assert len(set(info.sop_instance_uids)) == 1


def test_legacy_multiframe_is_refused_clearly(tmp_path: Path, write_enhanced_mr):
    write_enhanced_mr(_volume(), tmp_path / "legacy.dcm", tmp_path / "classic", functional_groups=False)
    with pytest.raises(InputError, match=ENHANCED_UNSUPPORTED):
        load_dicom([tmp_path / "legacy.dcm"])


def test_sheared_in_plane_affine_cannot_be_written(tmp_path: Path):
    affine = np.eye(4)
    affine[0, 1] = 0.5
    with pytest.raises(GeometryError, match="not perpendicular"):
        write_dicom_series(Volume(np.zeros((3, 3, 3)), affine), tmp_path)


# ----------------------------------------------------------------------------
# series selection


def test_two_sagittal_series_in_one_folder_are_listed_and_selectable(tmp_path: Path):
    t2, t1, ax = _volume("PIR", seed=1), _volume("PIR", seed=3), _volume("LPS", seed=2)
    write_dicom_series(t2, tmp_path / "a", series_uid="1.2.826.0.1.1", series_description="T2 SAG")
    write_dicom_series(ax, tmp_path / "b", series_uid="1.2.826.0.1.2", series_description="T2 AX")
    write_dicom_series(t1, tmp_path / "c", series_uid="1.2.826.0.1.3", series_description="T1 SAG")
    with pytest.raises(InputError) as exc:
        load_image([tmp_path])
    message = str(exc.value)
    assert "\n" not in message and "--series" in message and message.startswith("3 image series in")
    assert "1.2.826.0.1.1 'T2 SAG' (6 images, sagittal)" in message
    assert "1.2.826.0.1.2 'T2 AX' (6 images, axial)" in message
    picked = load_image([tmp_path], series_uid="1.2.826.0.1.2")
    np.testing.assert_allclose(picked.volume.affine, ax.affine, atol=1e-4)
    assert picked.dicom is not None and picked.dicom.series_instance_uid == "1.2.826.0.1.2"
    assert picked.dicom.warnings == []  # the user's choice: nothing to say
    with pytest.raises(InputError, match="series 9.9 not found"):
        load_image([tmp_path], series_uid="9.9")


def test_the_only_sagittal_series_of_a_study_is_read_with_a_warning(tmp_path: Path):
    """A study exported with its axial series and a three-plane localizer: the sagittal series is labeled."""
    sag, ax = _volume("PIR", seed=1), _volume("LPS", seed=2)
    write_dicom_series(sag, tmp_path / "a", series_uid="1.2.826.0.1.1", series_description="T2 SAG")
    write_dicom_series(ax, tmp_path / "b", series_uid="1.2.826.0.1.2", series_description="T2 AX")
    write_dicom_series(_volume("PIR", seed=4), tmp_path / "loc", series_uid="1.2.826.0.1.9", file_prefix="S")
    write_dicom_series(_volume("LPS", seed=5), tmp_path / "loc", series_uid="1.2.826.0.1.9", file_prefix="A")
    loaded = load_image([tmp_path])
    np.testing.assert_allclose(loaded.volume.affine, sag.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.volume.real_data(), sag.data, atol=1e-3 * np.ptp(sag.data))
    assert loaded.dicom is not None and loaded.dicom.series_instance_uid == "1.2.826.0.1.1"
    (warning,) = loaded.dicom.warnings
    assert warning.code == "series-chosen"
    warning = warning.text
    assert warning.startswith("3 image series in") and "labeled the only sagittal one, 1.2.826.0.1.1 'T2 SAG'" in warning
    assert "1.2.826.0.1.2 'T2 AX'" in warning and "--series UID picks another" in warning


def test_copies_of_the_same_instances_count_once(tmp_path: Path):
    vol = _volume()
    files = write_dicom_series(vol, tmp_path / "a")
    (tmp_path / "copy").mkdir()
    for f in files:
        (tmp_path / "copy" / f.name).write_bytes(f.read_bytes())
    loaded = load_image([tmp_path])
    assert loaded.volume.shape == vol.shape
    np.testing.assert_allclose(loaded.volume.affine, vol.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.volume.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))


def test_non_dicom_files_beside_a_series_are_skipped(tmp_path: Path):
    vol = _volume()
    write_dicom_series(vol, tmp_path)
    (tmp_path / "README.txt").write_text("not an image\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "thumbs.db").write_bytes(b"\x00" * 300)
    loaded = load_image([tmp_path])
    np.testing.assert_allclose(loaded.volume.affine, vol.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.volume.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))


# ----------------------------------------------------------------------------
# bad inputs


def _rewrite(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def test_missing_path(tmp_path: Path):
    with pytest.raises(InputError, match="no such file or folder: .*nothing-here"):
        load_image([tmp_path / "nothing-here"])


def test_empty_folder(tmp_path: Path):
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    with pytest.raises(InputError, match="folder is empty: .*empty"):
        load_image([tmp_path / "empty"])


def test_folder_of_non_dicom_files(tmp_path: Path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="no DICOM files in"):
        load_image([tmp_path])


def test_folder_of_nifti_files_hints_at_the_file(tmp_path: Path):
    save_nifti(_volume(), tmp_path / "image.nii.gz")
    with pytest.raises(InputError, match="give the .nii/.nii.gz file itself"):
        load_image([tmp_path])


@pytest.mark.parametrize("keep", [400, 2000], ids=["header", "pixel-data"])
def test_truncated_dicom_file(tmp_path: Path, keep: int):
    files = write_dicom_series(_volume(shape=(20, 20, 4)), tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:keep])
    with pytest.raises(InputError, match=f"corrupt DICOM file {files[2]}"):
        load_image([tmp_path])


def test_missing_image_orientation(tmp_path: Path):
    files = write_dicom_series(_volume(), tmp_path)
    _rewrite(files[3], ImageOrientationPatient=None)
    with pytest.raises(InputError, match="missing DICOM tag ImageOrientationPatient"):
        load_image([tmp_path])


@pytest.mark.parametrize("n_slices, what", [(1, r"a 2D image \(one slice\)"), (2, "only 2 slices")])
def test_too_few_slices(tmp_path: Path, n_slices: int, what: str):
    write_dicom_series(_volume(shape=(8, 8, n_slices)), tmp_path)
    with pytest.raises(GeometryError, match=f"{what}: need a 3D sagittal stack of at least 3 slices"):
        load_image([tmp_path])


def test_inconsistent_orientations(tmp_path: Path):
    write_dicom_series(_volume("PIR"), tmp_path, series_uid="1.2.3", file_prefix="A")
    write_dicom_series(_volume("LPS"), tmp_path, series_uid="1.2.3", file_prefix="B")
    with pytest.raises(GeometryError, match="inconsistent ImageOrientationPatient"):
        load_image([tmp_path])


def test_duplicate_positions(tmp_path: Path):
    write_dicom_series(_volume(), tmp_path, series_uid="1.2.3", file_prefix="ECHO1_")
    write_dicom_series(_volume(), tmp_path, series_uid="1.2.3", file_prefix="ECHO2_")
    with pytest.raises(GeometryError, match="duplicate slice positions"):
        load_image([tmp_path])


def _set_tags(files: list[Path], **tags) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.save_as(f)


def test_of_several_echoes_in_one_series_the_longest_is_read_with_a_warning(tmp_path: Path):
    """A dual-echo series (proton density at TE 12 ms, T2 at TE 96 ms): the T2 images, said so."""
    pd_, t2 = _volume(seed=1), _volume(seed=2)
    _set_tags(write_dicom_series(t2, tmp_path, series_uid="1.2.3", file_prefix="E2_"), EchoTime="96", EchoNumbers=2)
    _set_tags(write_dicom_series(pd_, tmp_path, series_uid="1.2.3", file_prefix="E1_"), EchoTime="12", EchoNumbers=1)
    loaded = load_image([tmp_path])
    np.testing.assert_allclose(loaded.volume.real_data(), t2.data, atol=1e-3 * np.ptp(t2.data))
    np.testing.assert_allclose(loaded.volume.affine, t2.affine, atol=1e-4)
    assert loaded.dicom is not None
    assert all(f.name.startswith("E2_") for f in loaded.dicom.files)
    assert loaded.dicom.warnings == [LabelWarning(
        "echo-chosen",
        "series 1.2.3 holds 2 echoes at the same slice positions (TE 12, 96 ms): "
        "the longest, TE 96 ms (the most T2-weighted), was read",
    )]


def test_of_several_echoes_in_one_enhanced_file_the_longest_is_read(tmp_path: Path, write_enhanced_mr):
    """The echo time per frame (MR Echo functional group) of an enhanced multi-frame file."""
    pd_, t2 = _volume(seed=1), _volume(seed=2)
    n = t2.shape[2]
    both = Volume(np.concatenate([pd_.data, t2.data], axis=2), pd_.affine)  # slices n..2n-1 are the T2 echo
    write_enhanced_mr(both, tmp_path / "enhanced.dcm", tmp_path / "classic")  # frames in reverse slice order
    ds = pydicom.dcmread(tmp_path / "enhanced.dcm")
    frames = ds.PerFrameFunctionalGroupsSequence
    for f, group in enumerate(frames):
        t2_frame = f < n
        if t2_frame:  # the T2 image of slice k sits where the proton-density image of slice k does
            group.PlanePositionSequence[0].ImagePositionPatient = frames[f + n].PlanePositionSequence[0].ImagePositionPatient
        echo = pydicom.Dataset()
        echo.EffectiveEchoTime = 96.0 if t2_frame else 12.0
        group.MREchoSequence = [echo]
    ds.save_as(tmp_path / "enhanced.dcm")
    back, info = load_dicom([tmp_path / "enhanced.dcm"])
    np.testing.assert_allclose(back.affine, t2.affine, atol=1e-4)
    np.testing.assert_allclose(back.real_data(), t2.data, atol=1e-3 * np.ptp(both.data))
    assert sorted(info.frame_numbers) == list(range(1, n + 1)) and "TE 12, 96 ms" in info.warnings[0].text


def test_stacks_that_differ_in_image_type_are_refused_with_a_listing(tmp_path: Path):
    """Dixon water and fat images in one series: neither is better; one line says what to do."""
    _set_tags(write_dicom_series(_volume(seed=1), tmp_path, series_uid="1.2.3", file_prefix="W_"),
              ImageType=["DERIVED", "PRIMARY", "W"])
    _set_tags(write_dicom_series(_volume(seed=2), tmp_path, series_uid="1.2.3", file_prefix="F_"),
              ImageType=["DERIVED", "PRIMARY", "F"])
    with pytest.raises(GeometryError) as exc:
        load_image([tmp_path])
    message = str(exc.value)
    assert "\n" not in message and "told apart by ImageType" in message
    assert r"DERIVED\PRIMARY\W: 6 images" in message and "name one with --stack, or export it" in message


def _dixon(tmp_path: Path) -> tuple[Volume, Volume]:
    """A series of water (W) and fat (F) images at the same positions; (water, fat)."""
    water, fat = _volume(seed=1), _volume(seed=2)
    _set_tags(write_dicom_series(water, tmp_path, series_uid="1.2.3", file_prefix="W_"),
              ImageType=["DERIVED", "PRIMARY", "W"])
    _set_tags(write_dicom_series(fat, tmp_path, series_uid="1.2.3", file_prefix="F_"),
              ImageType=["DERIVED", "PRIMARY", "F"])
    return water, fat


@pytest.mark.parametrize("stack, prefix", [("W", "W_"), ("f", "F_"), (r"DERIVED\PRIMARY\F", "F_"), (" w ", "W_")])
def test_the_stack_named_is_read_with_its_geometry(tmp_path: Path, stack: str, prefix: str):
    """``--stack``: a listed value or the one part of it that tells it apart (any case) picks a stack."""
    water, fat = _dixon(tmp_path)
    loaded = load_image([tmp_path], stack=stack)
    expected = water if prefix == "W_" else fat
    np.testing.assert_allclose(loaded.volume.real_data(), expected.data, atol=1e-3 * np.ptp(expected.data))
    np.testing.assert_allclose(loaded.volume.affine, expected.affine, atol=1e-4)
    assert loaded.dicom is not None and all(f.name.startswith(prefix) for f in loaded.dicom.files)
    (warning,) = loaded.dicom.warnings
    assert warning.code == "stack-chosen" and "2 stacks" in warning.text and f"was read (--stack {stack})" in warning.text


@pytest.mark.parametrize("stack", ["PRIMARY", "IP", "", "12"])
def test_a_stack_name_that_fits_none_or_several_is_one_line_listing_them(tmp_path: Path, stack: str):
    _dixon(tmp_path)
    with pytest.raises(InputError) as exc:
        load_image([tmp_path], stack=stack)
    message = str(exc.value)
    assert "\n" not in message and "names none or several of the 2 stacks" in message
    assert r"DERIVED\PRIMARY\W: 6 images" in message


def test_an_echo_is_picked_by_its_echo_time(tmp_path: Path):
    """The shorter echo of a dual-echo series, which is not read by default."""
    pd_, t2 = _volume(seed=1), _volume(seed=2)
    _set_tags(write_dicom_series(t2, tmp_path, series_uid="1.2.3", file_prefix="E2_"), EchoTime="96")
    _set_tags(write_dicom_series(pd_, tmp_path, series_uid="1.2.3", file_prefix="E1_"), EchoTime="12")
    loaded = load_image([tmp_path], stack="12.0")
    np.testing.assert_allclose(loaded.volume.real_data(), pd_.data, atol=1e-3 * np.ptp(pd_.data))
    assert loaded.dicom is not None and all(f.name.startswith("E1_") for f in loaded.dicom.files)
    assert "told apart by EchoTime" in loaded.dicom.warnings[0].text and loaded.dicom.warnings[0].code == "stack-chosen"


def test_a_series_of_one_stack_is_read_whatever_stack_says(tmp_path: Path):
    """The option chooses among stacks; with one there is nothing to choose (a batch may name it for every series)."""
    vol = _volume()
    write_dicom_series(vol, tmp_path, series_uid="1.2.3")
    loaded = load_image([tmp_path], stack="W")
    np.testing.assert_allclose(loaded.volume.real_data(), vol.data, atol=1e-3 * np.ptp(vol.data))
    assert loaded.dicom is not None and loaded.dicom.warnings == []


def test_stack_on_a_nifti_file_is_refused(tmp_path: Path):
    path = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(path))
    with pytest.raises(InputError, match="--stack selects a stack of a DICOM series"):
        load_image([path], stack="W")


def test_a_localizer_of_several_orientations_is_refused_as_before(tmp_path: Path):
    """Stacks are looked for within one orientation only."""
    write_dicom_series(_volume("PIR"), tmp_path, series_uid="1.2.3", file_prefix="A")
    _set_tags(write_dicom_series(_volume("LPS"), tmp_path, series_uid="1.2.3", file_prefix="B"), EchoTime="50")
    with pytest.raises(GeometryError, match="inconsistent ImageOrientationPatient"):
        load_image([tmp_path])


def test_mixed_nifti_and_dicom(tmp_path: Path):
    save_nifti(_volume(), tmp_path / "v.nii.gz")
    files = write_dicom_series(_volume(), tmp_path / "dcm")
    with pytest.raises(InputError, match="mixed NIfTI and DICOM"):
        load_image([tmp_path / "v.nii.gz", *files])
    with pytest.raises(InputError, match="one NIfTI file per image"):
        load_image([tmp_path / "v.nii.gz", tmp_path / "v.nii.gz"])


def test_loaded_image_of_nifti(tmp_path: Path):
    save_nifti(_volume(), tmp_path / "v.nii.gz")
    loaded = load_image([str(tmp_path / "v.nii.gz")])
    assert isinstance(loaded, LoadedImage)
    assert (loaded.kind, loaded.source, loaded.dicom) == ("nifti", str(tmp_path / "v.nii.gz"), None)
    with pytest.raises(InputError, match="--series selects a DICOM series"):
        load_image([tmp_path / "v.nii.gz"], series_uid="1.2.3")


def test_rescale_in_row_blocks_equals_the_whole_plane_in_float64():
    from spinelabel.io.dicom_pixels import RESCALE_ROWS, store_plane

    plane = np.random.default_rng(2).integers(0, 65535, (2 * RESCALE_ROWS + 7, 50)).astype(np.uint16)
    for slope, intercept in [(0.00374, -12.5), (1.0, 0.0), (2.0, 0.0)]:
        target = np.empty(plane.shape[::-1], np.float32)
        store_plane(target, plane, slope, intercept)
        np.testing.assert_array_equal(target, (plane.astype(np.float64) * slope + intercept).T.astype(np.float32))


def test_a_loaded_series_keeps_no_pixel_data_in_its_headers(tmp_path: Path, monkeypatch):
    """Each file's pixels are dropped after its slice is copied (one series in memory, not two)."""
    import spinelabel.io.dicom as dicom

    kept = []
    original = dicom.read_pixels

    def read_and_keep_headers(ordered):
        kept.extend(s.dataset for s in ordered)
        return original(ordered)

    monkeypatch.setattr(dicom, "read_pixels", read_and_keep_headers)
    vol = Volume(np.random.default_rng(3).random((20, 24, 5)).astype(np.float32) * 100, np.diag([0.8, 0.8, 3.0, 1.0]))
    write_dicom_series(vol, tmp_path / "s")
    loaded = load_dicom(tmp_path / "s")[0]
    assert len(kept) == 5 and not any("PixelData" in ds for ds in kept)
    np.testing.assert_allclose(loaded.real_data(), vol.data, atol=100 / 65535 + 1e-4)


# ----------------------------------------------------------------------------
# integer voxels: kept as stored when the rescale maps integers to integers


def _twelve_bit_series(
    folder: Path, slope: str, intercept: str, bits_stored: int = 12, shape=SHAPE, spacing=(0.7, 0.8, 3.5)
) -> np.ndarray:
    """A sagittal series of 12-bit values (0..4095) rewritten with the given rescale; the stored values."""
    stored = np.random.default_rng(3).integers(0, 4096, shape).astype(np.uint16)
    for path in write_dicom_series(Volume(stored, _affine("PIR", spacing)), folder):
        _rewrite(path, BitsStored=bits_stored, HighBit=bits_stored - 1, RescaleSlope=slope, RescaleIntercept=intercept)
    return stored


@pytest.mark.parametrize(
    "slope, intercept, bits_stored, dtype, rescale",
    [
        ("1", "0", 12, np.uint16, None),
        ("1", "-1024", 12, np.int16, None),  # CT-like: 12 bits shifted by a whole intercept
        ("1", "-1024", 16, np.uint16, Rescale(1.0, -1024.0)),  # 0..65535 - 1024 does not fit 16 bits
        ("0.5", "0", 12, np.uint16, Rescale(0.5, 0.0)),  # a fractional rescale: stored integers and the map
        ("1", "0.5", 12, np.uint16, Rescale(1.0, 0.5)),
    ],
)
def test_dicom_keeps_integers_exact_or_stored_with_the_rescale(
    tmp_path: Path, slope: str, intercept: str, bits_stored: int, dtype, rescale
):
    stored = _twelve_bit_series(tmp_path, slope, intercept, bits_stored)
    vol, _ = load_dicom([tmp_path])
    assert vol.data.dtype == dtype and vol.rescale == rescale
    expected = (stored * float(slope) + float(intercept)).astype(np.float32)
    np.testing.assert_array_equal(vol.real_data(), expected)
    if rescale is None:
        np.testing.assert_array_equal(vol.data, expected)


def _float32_path(monkeypatch) -> None:
    """Make the reader rescale every series into float32 while reading (the path before stored integers + map)."""
    import spinelabel.io.dicom_pixels as dicom_pixels

    monkeypatch.setattr(dicom_pixels, "_voxel_type", lambda ordered: (np.dtype(np.float32), None))


def test_a_fractional_slope_series_is_held_as_stored_integers_with_the_map(tmp_path: Path, monkeypatch):
    stored = _twelve_bit_series(tmp_path, "1.52747", "-3.25")
    vol, _ = load_dicom([tmp_path])
    assert vol.data.dtype == np.uint16 and vol.rescale == Rescale(1.52747, -3.25)
    np.testing.assert_array_equal(vol.data, stored)
    _float32_path(monkeypatch)
    floats, _ = load_dicom([tmp_path])
    assert floats.data.dtype == np.float32 and floats.rescale is None
    np.testing.assert_array_equal(vol.real_data(), floats.data)
    np.testing.assert_array_equal(vol.real_data((slice(None), 3)), floats.data[:, 3])  # one slice of the values
    np.testing.assert_array_equal(vol.affine, floats.affine)


def test_slices_with_different_slopes_are_read_as_float32(tmp_path: Path):
    stored = _twelve_bit_series(tmp_path, "1.52747", "0")
    files = sorted(tmp_path.glob("*.dcm"))
    _rewrite(files[1], RescaleSlope="0.75", RescaleIntercept="2")
    vol, info = load_dicom([tmp_path])
    assert vol.data.dtype == np.float32 and vol.rescale is None
    k = info.files.index(files[1])
    expected = stored * 1.52747
    expected[:, :, k] = stored[:, :, k] * 0.75 + 2
    np.testing.assert_array_equal(vol.data, expected.astype(np.float32))


def test_values_beyond_the_stored_type_drop_the_map_and_give_real_float32_values(tmp_path: Path, monkeypatch):
    import spinelabel.io.dicom_pixels as dicom_pixels

    stored = _twelve_bit_series(tmp_path, "1.52747", "-3.25")
    odd = sorted(tmp_path.glob("*.dcm"))[-1]
    decode = dicom_pixels.decode
    monkeypatch.setattr(dicom_pixels, "decode", lambda s: decode(s).astype(np.int32) - 5000 * (s.path == odd))
    vol, info = load_dicom([tmp_path])
    assert vol.data.dtype == np.float32 and vol.rescale is None and info.files.index(odd) > 0
    values = stored.astype(np.int32)
    values[:, :, info.files.index(odd)] -= 5000
    np.testing.assert_array_equal(vol.data, (values.astype(np.float64) * 1.52747 - 3.25).astype(np.float32))


def test_a_fractional_slope_series_gives_the_model_input_and_overlay_of_its_float_version(tmp_path: Path, monkeypatch):
    from spinelabel.io.outputs import render_overlay
    from spinelabel.pipeline import LabelResult, Vertebra
    from spinelabel.preprocessing import FrameSpec, normalize_intensity, to_model_frame

    shape = (70, 60, 6)  # 56 x 48 mm: wide enough for the model frame
    _twelve_bit_series(tmp_path / "dcm", "1.52747", "-3.25", shape=shape, spacing=(0.8, 0.8, 3.5))
    ints, _ = load_dicom([tmp_path / "dcm"])
    _float32_path(monkeypatch)
    floats, _ = load_dicom([tmp_path / "dcm"])
    assert ints.rescale is not None and floats.rescale is None
    for spec, exact in ((FrameSpec(0.8, 2.0), True), (FrameSpec(2.0, 2.0), False)):  # copy, resampled
        a, b = (to_model_frame(v, spec) for v in (ints, floats))
        assert a.data.dtype == np.float32 and a.rescale is None
        np.testing.assert_array_equal(a.affine, b.affine)
        compare = np.testing.assert_array_equal if exact else np.testing.assert_allclose
        compare(a.data, b.data, **({} if exact else {"rtol": 1e-6}))
        compare(normalize_intensity(a.data), normalize_intensity(b.data), **({} if exact else {"atol": 1e-6}))
    centre = ints.voxel_to_world(np.array(shape) / 2)
    result = LabelResult("lumbar", "m", "0", [Vertebra("L3", centre, np.array(shape) / 2, 0.9)])
    for name, vol in (("int.png", ints), ("float.png", floats)):
        render_overlay(vol, result, tmp_path / name)
    assert (tmp_path / "int.png").read_bytes() == (tmp_path / "float.png").read_bytes()


def test_writing_a_volume_with_a_map_writes_its_real_values(tmp_path: Path):
    stored = np.random.default_rng(4).integers(0, 4096, SHAPE).astype(np.uint16)
    vol = Volume(stored, _affine("PIR"), Rescale(0.25, 10.0))
    write_dicom_series(vol, tmp_path / "dcm")
    save_nifti(vol, tmp_path / "v.nii.gz")
    from_dicom, _ = load_dicom([tmp_path / "dcm"])
    from_nifti = load_nifti(tmp_path / "v.nii.gz")
    assert from_nifti.data.dtype == np.uint16 and from_nifti.rescale == Rescale(0.25, 10.0)
    np.testing.assert_array_equal(from_nifti.real_data(), vol.real_data())
    real_range = 4095 * 0.25
    np.testing.assert_allclose(from_dicom.real_data(), vol.real_data(), atol=real_range / 65535 + 1e-4)  # the writer's quantum


def test_dicom_values_beyond_the_chosen_integer_type_fall_back_to_float32(tmp_path: Path, monkeypatch):
    import spinelabel.io.dicom_pixels as dicom_pixels

    stored = _twelve_bit_series(tmp_path, "1", "-1024", 12)
    decode = dicom_pixels.decode
    monkeypatch.setattr(dicom_pixels, "decode", lambda s: decode(s).astype(np.int32) + 40000)  # beyond BitsStored
    vol, _ = load_dicom([tmp_path])
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, stored.astype(np.float32) + 40000 - 1024)


def test_integer_dicom_gives_the_model_input_and_overlay_of_its_float_version(tmp_path: Path):
    from spinelabel.io.outputs import render_overlay
    from spinelabel.pipeline import LabelResult, Vertebra
    from spinelabel.preprocessing import FrameSpec, normalize_intensity, to_model_frame

    shape = (70, 60, 6)  # 56 x 48 mm: wide enough for the model frame
    _twelve_bit_series(tmp_path / "dcm", "1", "-1024", shape=shape, spacing=(0.8, 0.8, 3.5))
    ints, _ = load_dicom([tmp_path / "dcm"])
    floats = Volume(ints.data.astype(np.float32), ints.affine)
    assert ints.data.dtype == np.int16
    for spec, frame_shape in ((FrameSpec(0.8, 2.0), (6, 60, 70)), (FrameSpec(2.0, 2.0), (6, 24, 28))):  # copy, resampled
        a, b = (to_model_frame(v, spec) for v in (ints, floats))
        assert a.shape == frame_shape and a.data.dtype == np.float32
        np.testing.assert_array_equal(a.affine, b.affine)
        np.testing.assert_array_equal(normalize_intensity(a.data), normalize_intensity(b.data))
    centre = ints.voxel_to_world(np.array(shape) / 2)
    result = LabelResult("lumbar", "m", "0", [Vertebra("L3", centre, np.array(shape) / 2, 0.9)])
    for name, vol in (("int.png", ints), ("float.png", floats)):
        render_overlay(vol, result, tmp_path / name)
    assert (tmp_path / "int.png").read_bytes() == (tmp_path / "float.png").read_bytes()


@pytest.mark.parametrize(
    "dtype, slope, expected",
    [
        ("<i2", None, np.int16), (">i2", None, np.int16), ("u1", None, np.uint8), ("<i2", 1.5, np.int16),
        ("<i2", -2.0, np.float32), ("<i4", None, np.float32),
    ],
    ids=["int16", "big-endian", "uint8", "scaled", "negative-slope", "int32"],
)
def test_nifti_keeps_small_integers_and_their_scaling(tmp_path: Path, dtype: str, slope, expected):
    data = np.random.default_rng(2).integers(0, 120, (5, 6, 7)).astype(dtype)
    img = nib.Nifti1Image(data, _affine("PIR"))
    if slope is not None:
        img.header.set_slope_inter(slope, 0.5)
    nib.save(img, tmp_path / "x.nii.gz")
    vol = load_nifti(tmp_path / "x.nii.gz")
    assert vol.data.dtype == expected and vol.data.dtype.isnative
    scaled = slope is not None and slope > 0
    assert vol.rescale == (Rescale(slope, 0.5) if scaled else None)
    np.testing.assert_array_equal(vol.data, data if scaled else data * (slope or 1) + 0.5 * (slope is not None))
    np.testing.assert_array_equal(vol.real_data(), (data * (slope or 1) + 0.5 * (slope is not None)).astype(np.float32))


def test_nifti_that_cannot_be_written_says_why_and_leaves_nothing(tmp_path: Path):
    from spinelabel.errors import OutputError

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputError, match=f"^cannot write {blocker / 'out' / 'v.nii.gz'}: {blocker} is a file, not a folder$"):
        save_nifti(_volume(), blocker / "out" / "v.nii.gz")
    (tmp_path / "taken.nii.gz").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        save_nifti(_volume(), tmp_path / "taken.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "taken.nii.gz"]
