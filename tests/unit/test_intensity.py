"""Random-network contrast augmentation: edges stay, brightness and polarity change."""

from __future__ import annotations

import numpy as np
import pytest

from spinelabel.training import sampling as S
from spinelabel.training.intensity import random_network, random_network_contrast

NET = dict(layers=4, channels=2, kernel_sizes=(1, 3), leak=0.2)


def _square(n: int = 64) -> np.ndarray:
    img = np.full((n, n), 0.3)
    img[20:44, 20:44] = 0.9  # a "body" in flat surroundings
    return img


def test_random_network_is_local_flat_regions_stay_flat():
    # four layers of kernels <= 3 px see at most 4 px away: far from the square's edge
    # every pixel of one region maps to the same value, whatever the weights
    img = _square()
    for seed in range(5):
        out = random_network(np.random.default_rng(seed), img, **NET)
        assert out.shape == img.shape
        inside, outside = out[26:38, 26:38], out[:14, :14]
        assert np.ptp(inside) < 1e-9 and np.ptp(outside) < 1e-9


def test_random_network_contrast_stays_in_range_and_draws_both_polarities():
    img = _square()
    brighter_inside = []
    for seed in range(40):
        out = random_network_contrast(np.random.default_rng(seed), img, **NET, p_blend=0.0, blend_grid=4, clip=1.2)
        assert out.shape == img.shape and np.all(np.isfinite(out))
        assert out.min() >= 0.0 and out.max() <= 1.2
        brighter_inside.append(out[32, 32] > out[5, 5])
    # the original contrast (inside brighter) and its inverse both occur
    assert 0 < sum(brighter_inside) < len(brighter_inside)


def test_random_network_contrast_is_reproducible_and_blends_regions():
    img = _square()
    img[:, 48:] = 0.6  # a third tissue: the networks' outputs differ beyond a polarity
    a = random_network_contrast(np.random.default_rng(7), img, **NET, p_blend=1.0, blend_grid=4, clip=1.2)
    b = random_network_contrast(np.random.default_rng(7), img, **NET, p_blend=1.0, blend_grid=4, clip=1.2)
    np.testing.assert_array_equal(a, b)
    # blended through a smooth mask, one flat region no longer maps to one value
    third = a[4:60, 52:]
    assert np.ptp(third) > 1e-3
    unblended = random_network_contrast(np.random.default_rng(7), img, **NET, p_blend=0.0, blend_grid=4, clip=1.2)
    assert np.ptp(unblended[4:60, 52:]) < 1e-9


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_network_changes_the_image_never_the_targets(p):
    rng_img = np.random.default_rng(3)
    vol = rng_img.uniform(0, 1, (40, 200, 120)).astype(np.float32)  # (R, I, P) canonical, 1 mm
    points = np.array([[20.0, 60.0 + 32 * k, 60.0] for k in range(4)])
    scan = S.TrainingScan("synthetic", vol, np.ones(3), ["L2", "L3", "L4", "L5"], points)
    base = S.SamplerSpec(p_negative=0.0)
    with_net = S.SamplerSpec(p_negative=0.0, p_random_network=p)
    ref = S.sample(np.random.default_rng(11), scan, base)
    got = S.sample(np.random.default_rng(11), scan, with_net)
    for r, g in zip(ref[1:], got[1:]):
        np.testing.assert_array_equal(r, g)
    if p == 0.0:  # off draws nothing: the very same sample
        np.testing.assert_array_equal(ref[0], got[0])
    else:
        assert not np.allclose(ref[0], got[0])


def _neck(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A body (an ellipse of tissue at 0.2-1.0, with a thin dark line inside) in noisy dark air, a bright noise pixel."""
    rng = np.random.default_rng(0)
    r, c = np.indices((n, n))
    body = ((r - n / 2) / 40.0) ** 2 + ((c - n / 2) / 25.0) ** 2 <= 1.0
    img = np.abs(rng.normal(0.0, 0.01, (n, n)))  # the air's noise
    img[body] = 0.2 + 0.8 * (c[body] % 12) / 11.0  # tissues of every brightness
    img[body & (np.abs(c - n / 2) < 1)] = 0.02  # a dark line one pixel wide inside the body
    img[3, 3] = 0.25  # a lone bright pixel in the air (noise, ghosting)
    return img, body


def test_invert_tissue_keeps_the_air_dark():
    from scipy import ndimage

    from spinelabel.training.intensity import invert_tissue

    img, body = _neck()
    spec = S.SamplerSpec()
    out = invert_tissue(img, spec.intensity_clip, spec.air_smoothing_px, spec.air_range)
    far_air = ~ndimage.binary_dilation(body, iterations=4)
    np.testing.assert_array_equal(out[far_air], img[far_air])  # the air: as it was (dark)
    core = ndimage.binary_erosion(body, iterations=3) & (img > 0.1)
    np.testing.assert_allclose(out[core], 1.0 - img[core] / spec.intensity_clip)  # the tissue: inverted
    line = ndimage.binary_erosion(body, iterations=3) & (img == 0.02)
    np.testing.assert_array_equal(out[line], img[line])  # a dark line amid tissue stays dark (bone on T1)
    assert out[~body].max() < 0.5  # no bright rim around the body
    assert np.median((1.0 - img / spec.intensity_clip)[far_air]) > 0.9  # a whole-crop inversion makes the air bright


def test_the_sampler_inverts_only_the_tissue_when_asked():
    vol = np.zeros((20, 160, 120), np.float32)  # (R, I, P), 1 mm: air ...
    vol[:, 20:140, 30:90] = np.linspace(0.3, 1.0, 60)  # ... and a block of tissue
    points = np.array([[10.0, 40.0 + 30 * k, 60.0] for k in range(4)])
    scan = S.TrainingScan("synthetic", vol, np.ones(3), ["L2", "L3", "L4", "L5"], points)
    plain = dict(p_negative=0.0, p_remap=0.0, p_invert=1.0, p_bias_field=0.0, p_noise=0.0, p_blur=0.0,
                 gamma=(1.0, 1.0), gain=(1.0, 1.0), offset=(0.0, 0.0))
    whole = S.sample(np.random.default_rng(5), scan, S.SamplerSpec(**plain))[0]
    dark = S.sample(np.random.default_rng(5), scan, S.SamplerSpec(**plain, invert_keeps_air_dark=True))[0]
    corner = (slice(0, 4), slice(0, 4))  # the crop's corner lies in the air or outside the image
    assert whole[corner].min() > 0.8 and dark[corner].max() < 0.05
    tissue = (whole < 0.7) & (dark > 0.1)  # inverted tissue, away from the block's edges
    assert tissue.sum() > 100
    np.testing.assert_allclose(dark[tissue], whole[tissue], atol=0.02)
