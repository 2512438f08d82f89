"""The contrast changes of benchmarks.robustness on a small synthetic image with a known anatomy."""

import numpy as np

from benchmarks.robustness import AIR_GAIN, body_outline, t1_dark_air
from spinelabel.geometry import Volume


def _body_in_air(seed: int = 0) -> tuple[Volume, dict[str, np.ndarray]]:
    """Dark noisy air around a 'body' (intensity 100) holding a bright 'fluid' block (300) and a dark 'bone' (30)."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 4, (40, 40, 40)).astype(np.float32)  # air: noise
    data[8:32, 8:32, 8:32] = 100.0
    data[14:20, 14:20, 14:20] = 300.0
    data[22:26, 22:26, 22:26] = 30.0
    return Volume(data, np.diag([1.2, 1.2, 1.2, 1.0])), {"L1": np.array([1.0, 2.0, 3.0])}


def test_the_body_outline_holds_the_body_and_its_dark_parts_not_the_air():
    vol, _ = _body_in_air()
    inside = body_outline(vol)
    assert inside[8:32, 8:32, 8:32][2:-2, 2:-2, 2:-2].all()  # dark 'bone' included: the outline is filled
    assert not inside[:4].any() and not inside[-4:].any()


def test_t1_dark_air_folds_the_fluid_dark_and_keeps_the_air_dark():
    vol, points = _body_in_air()
    out, kept = t1_dark_air(vol, points)
    y = out.data
    assert kept is points and np.array_equal(out.affine, vol.affine)
    fluid, tissue, air = y[16, 16, 16], y[10, 10, 10], y[:4].max()
    assert fluid < 0.5 * tissue  # the brightest tissue turned dark, as fluid on T1
    assert air <= AIR_GAIN * 4 / 300 * 1.2 + 1e-6 and air < 0.05 * tissue  # the air stays dark
