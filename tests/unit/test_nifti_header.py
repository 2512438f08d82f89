"""NIfTI headers beyond the affine: spatial units, sheared grids, sform and qform that disagree."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinelabel.errors import InputError
from spinelabel.io import load_image
from spinelabel.io.nifti import load_nifti
from spinelabel.pipeline import label_loaded
from spinelabel.testing.dummy import blob_labeler, blob_spine

#: An oblique LPS-stored grid of 0.8 x 0.9 x 3.5 mm voxels (a sagittal stack).
AFFINE = np.array([[0.0, 0.0, -3.5, 12.0], [-0.8, 0.0, 0.0, 30.5], [0.0, -0.9, 0.0, 40.25], [0.0, 0.0, 0.0, 1.0]])
SHAPE = (40, 48, 12)


def _save(path: Path, affine: np.ndarray, unit: str = "mm", qform: np.ndarray | None = None, data=None) -> Path:
    data = np.random.default_rng(0).random(SHAPE).astype(np.float32) if data is None else data
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(unit)
    img.set_sform(affine, code=1)
    img.set_qform(affine if qform is None else qform, code=1)
    nib.save(img, path)
    return path


@pytest.mark.parametrize(("unit", "per_mm"), [("micron", 1000.0), ("meter", 0.001), ("mm", 1.0), ("unknown", 1.0)])
def test_a_header_in_metres_or_micrometres_gives_the_affine_in_mm(tmp_path, unit, per_mm):
    """xyzt_units was ignored: 1 mm voxels stored in micrometres were refused as 224 m wide, in metres as 0 mm."""
    scaled = AFFINE.copy()
    scaled[:3, :] *= per_mm
    volume = load_nifti(_save(tmp_path / "x.nii.gz", scaled, unit))
    np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-6)


def test_a_size_refusal_names_the_header_unit(tmp_path):
    """Millimetre voxels in a header that says metres (a 42 m image) are refused, naming the unit."""
    with pytest.raises(InputError, match=r"its header gives lengths in meter, converted to mm"):
        load_nifti(_save(tmp_path / "x.nii.gz", AFFINE, "meter"))


def test_sheared_and_disagreeing_forms_are_warned(tmp_path):
    """The DICOM reader warns of a sheared grid; a NIfTI said nothing, nor when its qform mirrors its sform."""
    plain = load_image(_save(tmp_path / "plain.nii.gz", AFFINE))
    assert plain.warnings == ()
    sheared = AFFINE.copy()
    sheared[:3, 2] += 0.3 * sheared[:3, 0]  # each slice offset 0.24 mm in-plane: a gantry tilt of about 4 deg
    codes = [w.code for w in load_image(_save(tmp_path / "sheared.nii.gz", sheared)).warnings]
    assert codes == ["sheared-grid"]  # a qform cannot hold a shear: that it differs is no news
    mirrored = np.diag([-1.0, 1.0, 1.0, 1.0]) @ AFFINE
    loaded = load_image(_save(tmp_path / "mirrored.nii.gz", AFFINE, qform=mirrored))
    assert [w.code for w in loaded.warnings] == ["forms-disagree"]
    np.testing.assert_allclose(loaded.volume.affine, AFFINE)  # the sform is read
    apart = float(loaded.warnings[0].text.split("up to ")[1].split(" mm")[0])
    assert apart == pytest.approx(2 * (3.5 * (SHAPE[2] - 1) - 12.0), abs=0.1)  # x = 12 - 3.5 k, mirrored: k = 11


def test_the_reader_warnings_of_a_nifti_come_first_in_the_result(tmp_path):
    volume = blob_spine()[0]
    qform = np.diag([-1.0, 1.0, 1.0, 1.0]) @ volume.affine
    loaded = load_image(_save(tmp_path / "blob.nii.gz", volume.affine, qform=qform, data=volume.real_data()))
    result = label_loaded(blob_labeler(), loaded)
    assert result.warnings[0].code == "forms-disagree" and len(result.vertebrae) == 5


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_qform_header_with_voxel_size_zero_is_refused_not_read_as_1_mm(tmp_path, suffix):
    """nibabel repairs pixdim 0 to 1 as it reads the header: a 0.5 mm scan became a 1 mm one, refused later as "no
    vertebrae found" with no word of the header."""
    import gzip
    import struct

    from spinelabel.errors import GeometryError

    img = nib.Nifti1Image(np.random.default_rng(0).random(SHAPE).astype(np.float32), AFFINE)
    img.set_sform(None, code=0)
    img.set_qform(AFFINE, code=1)
    nib.save(img, tmp_path / "raw.nii")
    raw = bytearray((tmp_path / "raw.nii").read_bytes())
    raw[80:92] = struct.pack("<3f", 0.0, 0.0, 0.0)  # pixdim[1..3]: the voxel size
    path = tmp_path / f"zero{suffix}"
    path.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    with pytest.raises(GeometryError, match=r"voxel sizes 0, 0, 0 mm \(pixdim\) and no sform"):
        load_nifti(path)
    with_sform = tmp_path / f"sform{suffix}"  # an sform carries its own voxel size: read as before
    img.set_sform(AFFINE, code=1)
    nib.save(img, tmp_path / "s.nii")
    raw = bytearray((tmp_path / "s.nii").read_bytes())
    raw[80:92] = struct.pack("<3f", 0.0, 0.0, 0.0)
    with_sform.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    np.testing.assert_allclose(load_nifti(with_sform).affine, AFFINE, atol=1e-5)


def test_a_negative_dimension_in_the_header_is_said_as_such(tmp_path):
    import struct

    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), AFFINE), tmp_path / "ok.nii")
    raw = bytearray((tmp_path / "ok.nii").read_bytes())
    raw[42:44] = struct.pack("<h", -5)  # dim[1]
    (tmp_path / "neg.nii").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"-5x48x12 voxels \(dim\): not an image"):
        load_nifti(tmp_path / "neg.nii")
