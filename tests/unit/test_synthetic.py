import dataclasses
import itertools

import numpy as np
import pytest

from spinelabel import anatomy
from spinelabel.synthetic import CONTRASTS, SyntheticSpec, random_spec, synthesize_spine

LUMBAR = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")


def _value(volume, point):
    """Intensity of the voxel nearest a world point."""
    ijk = np.round(volume.world_to_voxel(point)).astype(int)
    return float(volume.data[tuple(ijk)])


def _inside(volume, point) -> bool:
    ijk = volume.world_to_voxel(point)
    return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.array(volume.shape) - 0.5))


def test_default_spec_geometry_and_points_inside():
    spec = dataclasses.replace(SyntheticSpec(), spacing=(1.4, 1.4, 1.4))  # default spec, coarser to stay fast
    volume, points = synthesize_spine(spec, np.random.default_rng(0))
    assert volume.data.dtype == np.float32 and np.all(np.isfinite(volume.data))
    assert "".join(volume.axcodes) == spec.axcodes
    np.testing.assert_allclose(volume.spacing, spec.spacing)
    assert list(points) == list(spec.levels)
    for level, p in points.items():
        assert p.shape == (3,) and _inside(volume, p), level


@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(levels=("C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1"), axcodes="LPS", spacing=(1.5, 1.5, 1.5)),
        SyntheticSpec(levels=("T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"), spacing=(0.9, 0.9, 3.5), axcodes="PIR"),
        SyntheticSpec(
            levels=("T11", "T12", "T13", "L1", "L2"), axcodes="RAS", spacing=(3.0, 1.2, 1.2), contrast="random"
        ),
    ],
)
def test_requested_levels_exactly_returned_inside(spec):
    volume, points = synthesize_spine(spec, np.random.default_rng(1))
    assert tuple(points) == spec.levels
    np.testing.assert_allclose(volume.spacing, spec.spacing)
    assert "".join(volume.axcodes) == spec.axcodes
    assert all(_inside(volume, p) for p in points.values())


@pytest.mark.parametrize("contrast", ["T2", "T1", "STIR"])
def test_body_and_disc_intensities_follow_the_contrast(contrast):
    spec = SyntheticSpec(levels=LUMBAR, contrast=contrast, noise=0.0, spacing=(1.5, 1.5, 1.5))
    for seed in (0, 1):
        volume, points = synthesize_spine(spec, np.random.default_rng(seed))
        for upper, lower in itertools.pairwise(LUMBAR):
            body = _value(volume, points[upper])
            disc = _value(volume, (points[upper] + points[lower]) / 2)
            if contrast == "T1":
                assert body >= disc, (seed, upper, body, disc)
            else:  # T2 and STIR: the hydrated nucleus is brighter than the marrow
                assert disc > 1.2 * body, (seed, upper, body, disc)


def test_same_world_image_in_two_orientations():
    base = SyntheticSpec(
        levels=("L1", "L2", "L3", "L4", "L5", "S1"), spacing=(1.3, 1.3, 1.3), noise=0.0, bias=0.3, scoliosis_deg=8.0
    )
    a, pa = synthesize_spine(dataclasses.replace(base, axcodes="PIR"), np.random.default_rng(7))
    b, pb = synthesize_spine(dataclasses.replace(base, axcodes="LPS"), np.random.default_rng(7))
    assert a.axcodes == ("P", "I", "R") and b.axcodes == ("L", "P", "S")
    assert sorted(a.shape) == sorted(b.shape)
    for level in base.levels:
        np.testing.assert_allclose(pa[level], pb[level], atol=1e-9)
        assert _value(a, pa[level]) == pytest.approx(_value(b, pb[level]), abs=1e-5)
    # the whole image agrees voxel for voxel once both are in the same orientation
    from spinelabel.geometry import reorient

    b_as_a = reorient(b, "PIR")
    np.testing.assert_allclose(b_as_a.affine, a.affine, atol=1e-9)
    np.testing.assert_allclose(b_as_a.data, a.data, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_adjacent_distances_match_the_prior(scale):
    levels = anatomy.chain(("L6",))
    spec = SyntheticSpec(levels=levels, scale=scale, spacing=(4.0, 4.0, 4.0), lordosis_deg=55.0, scoliosis_deg=10.0)
    _, points = synthesize_spine(spec, np.random.default_rng(3))
    for upper, lower in itertools.pairwise(levels):
        measured = np.linalg.norm(points[upper] - points[lower])
        expected = anatomy.typical_spacing_mm(upper, lower) * scale
        assert measured == pytest.approx(expected, rel=0.10), (upper, lower)


def test_explicit_fov():
    spec = SyntheticSpec(levels=("T12", "L1", "L2", "L3", "L4", "L5", "S1"), fov_mm=(80.0, 256.0, 256.0), axcodes="RAS")
    volume, points = synthesize_spine(spec, np.random.default_rng(0))
    assert volume.shape == (80, 256, 256)
    assert all(_inside(volume, p) for p in points.values())


def test_fov_too_small_and_invalid_specs_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="outside"):
        synthesize_spine(SyntheticSpec(fov_mm=(80.0, 100.0, 200.0)), rng)
    for bad in (
        SyntheticSpec(levels=("L1", "L3")),
        SyntheticSpec(levels=("L1", "X9")),
        SyntheticSpec(axcodes="RRS"),
        SyntheticSpec(contrast="PD"),
        SyntheticSpec(spacing=(1.0, 0.0, 1.0)),
    ):
        with pytest.raises(ValueError):
            synthesize_spine(bad, rng)


@pytest.mark.parametrize("region", ["lumbar", "cervical", "whole"])
def test_random_spec_is_always_valid(region):
    rng = np.random.default_rng(11)
    for _ in range(20):
        spec = random_spec(rng, region)
        variants = tuple(v for v in anatomy.VARIANT_AFTER if v in spec.levels)
        chain = anatomy.chain(variants)
        start = chain.index(spec.levels[0])
        assert chain[start : start + len(spec.levels)] == spec.levels
        assert set(spec.levels) <= set(anatomy.REGIONS[region].levels) | set(variants)
        assert len(spec.levels) >= 4
        assert [sum(a in pair for a in spec.axcodes) for pair in ("RL", "AP", "SI")] == [1, 1, 1]
        spacing = dict(zip(spec.axcodes, spec.spacing))
        lr = next(v for k, v in spacing.items() if k in "RL")
        inplane = [v for k, v in spacing.items() if k not in "RL"]
        assert all(0.4 < s <= 4.0 for s in spec.spacing)
        if lr >= 3.0:  # thick sagittal slices, fine in-plane pixels
            assert all(0.5 <= s <= 0.9 for s in inplane)
        assert spec.contrast in (*CONTRASTS, "random")
        assert 0 <= spec.noise <= 0.1 and 0 <= spec.bias <= 0.5 and 0.8 <= spec.scale <= 1.2
    # and a few of them synthesise (coarse grid to stay fast)
    for _ in range(2):
        spec = dataclasses.replace(random_spec(rng, region), spacing=(4.0, 4.0, 4.0))
        volume, points = synthesize_spine(spec, rng)
        assert tuple(points) == spec.levels and all(_inside(volume, p) for p in points.values())


def test_default_fov_keeps_unrequested_neighbours_out():
    # white-box: the neighbours' centres come from the same anatomy the image was drawn from
    from spinelabel import synthetic_anatomy as S
    from spinelabel.synthetic_paint import fov_box

    rng = np.random.default_rng(5)
    for region in ("lumbar", "cervical", "whole", "lumbar"):
        spec = random_spec(rng, region)
        chain = S.validate_spec(spec)
        anat = S.draw_anatomy(spec, chain, rng)
        curve = S.build_curve(anat, spec.levels)
        points = {lv: S.level_point(anat, curve, lv) for lv in spec.levels}
        lo, hi = fov_box(spec, chain, anat, curve, points)
        first, last = chain.index(spec.levels[0]), chain.index(spec.levels[-1])
        for j in (first - 1, last + 1):
            if 0 <= j < len(chain):
                q = S.level_point(anat, curve, chain[j])
                assert np.any(q < lo) or np.any(q > hi), (chain[j], spec.levels)
        assert all(np.all(q >= lo) and np.all(q <= hi) for q in points.values())
