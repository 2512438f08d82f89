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
