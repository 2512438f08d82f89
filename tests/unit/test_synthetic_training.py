"""Phantoms mixed into training, and synthetic annotated cases on disk."""

import json

import numpy as np
import pytest

from spinelabel import anatomy
from spinelabel.annotations import load_annotations
from spinelabel.cli import main
from spinelabel.io.nifti import load_nifti
from spinelabel.training import sampling as S
from spinelabel.training import synthetic_data as D


def _scan(n_slices=60, spacing=(1.0, 1.0, 1.0), name="t"):
    data = np.random.default_rng(0).uniform(0, 1, (n_slices, 120, 100)).astype(np.float32)
    pts = np.array([[30.0, 30.0 + 30 * i, 50.0] for i in range(3)]) * 1.0
    return S.TrainingScan(name, data, np.asarray(spacing, float), ["L1", "L2", "L3"], pts)


def test_mixing_weights_give_the_synthetic_share():
    w = D.mixing_weights(3, 10, 0.25)
    assert w.shape == (13,) and np.isclose(w.sum(), 1.0)
    assert np.isclose(w[3:].sum(), 0.25) and np.allclose(w[:3], 0.25)
    assert np.allclose(D.mixing_weights(4, 0, 0.5), 0.25)  # nothing to mix: uniform over real
    with pytest.raises(ValueError):
        D.mixing_weights(1, 1, 1.5)


def test_batch_draws_scans_by_weight(monkeypatch):
    drawn = []
    real_sample = S.sample

    def recording(rng, scan, spec):
        drawn.append(scan.scan_id)
        return real_sample(rng, scan, spec)

    monkeypatch.setattr(S, "sample", recording)
    a, b, c = _scan(name="a"), _scan(name="b"), _scan(name="c")
    rng = np.random.default_rng(1)
    img, *_ = S.batch(rng, [a, b, c], S.SamplerSpec(), 8, weights=np.array([0.0, 1.0, 0.0]))
    assert img.shape == (8, 1, 128, 128) and drawn == ["b"] * 8
    drawn.clear()
    S.batch(rng, [a, b, c], S.SamplerSpec(), 300)
    assert set(drawn) == {"a", "b", "c"}  # uniform without weights


def test_crop_lateral_keeps_points_on_the_same_tissue():
    scan = _scan(n_slices=200)
    scan.points_mm[:, 0] = 150.0
    out = D._crop_lateral(scan, 20.0)
    assert out.data.shape[0] < 50
    # the slice holding the points is the same data before and after the crop
    k_old = int(round(scan.points_mm[0, 0] / scan.spacing[0]))
    k_new = int(round(out.points_mm[0, 0] / out.spacing[0]))
    np.testing.assert_array_equal(scan.data[k_old], out.data[k_new])


def test_limit_inplane_keeps_positions_in_mm():
    """The image is coarsened, and what sat at a point (mm) still sits there: data and points agree after."""
    scan = _scan(spacing=(3.0, 0.5, 0.5))
    # a smooth bright blob (sd 3 mm) on the first point, well inside the image, over a dark background
    scan.points_mm[0] = (90.0, 31.3, 22.7)
    mm = [np.arange(n) * d for n, d in zip(scan.data.shape, scan.spacing)]
    grid = np.meshgrid(*mm, indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grid, scan.points_mm[0]))
    scan.data[:] = np.exp(-r2 / (2 * 3.0**2)).astype(np.float32)
    out = D._limit_inplane(scan, 1.0)
    assert out.data.shape[1] < scan.data.shape[1] and np.all(out.spacing[1:] >= 0.99)
    np.testing.assert_allclose(out.points_mm, scan.points_mm)
    # the blob's centre of mass, in mm of the new grid, is still the point (within a tenth of a new voxel)
    new_mm = np.meshgrid(*[np.arange(n) * d for n, d in zip(out.data.shape, out.spacing)], indexing="ij")
    weights = out.data / out.data.sum()
    centre = np.array([(g * weights).sum() for g in new_mm])
    np.testing.assert_allclose(centre, scan.points_mm[0], atol=0.1)


def test_synthetic_training_scans_have_every_level_and_sane_points():
    scans, points = D.synthetic_training_scans(2, {"cervical": 1.0}, seed=3)
    assert len(scans) == len(points) == 2
    for scan, pts in zip(scans, points):
        assert scan.levels[0].startswith("C") and set(scan.levels) == set(pts)
        extent = (np.array(scan.data.shape) - 1) * scan.spacing
        assert np.all(scan.points_mm >= -1.0) and np.all(scan.points_mm <= extent + 1.0)
        # cranio-caudal order: row (I) coordinate increases along the chain
        assert np.all(np.diff(scan.points_mm[:, 1]) > 0)


def test_synth_command_writes_loadable_cases(tmp_path, capsys):
    code = main(["synth", str(tmp_path), "--region", "cervical", "--n", "2", "--seed", "5", "-q"])
    assert code == 0
    anns = load_annotations([tmp_path])
    assert [a.scan_id for a in anns] == ["synth-cervical-0000", "synth-cervical-0001"]
    for ann in anns:
        vol = load_nifti(ann.image)
        doc = json.loads((ann.image.parent / "centroids.json").read_text())
        for v in doc["vertebrae"]:
            # voxel and world agree through the NIfTI affine
            np.testing.assert_allclose(vol.voxel_to_world(v["voxel"]), v["world_mm"], atol=0.01)
            assert anatomy.VERSE_ID[v["label"]] == v["verse_id"]


def test_synth_command_rejects_unknown_region(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "out"), "--region", "pelvis", "--n", "1"]) != 0
    err = capsys.readouterr().err
    assert "unknown region" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the folder


@pytest.mark.parametrize("steps", [1, 3, 4, 20, 21, 400])
def test_learning_rate_schedule_works_for_any_number_of_steps(steps):
    import torch

    from spinelabel.training.train import TrainSettings, _scheduler

    opt = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), lr=1e-3)
    sched = _scheduler(opt, TrainSettings(steps=steps, learning_rate=1e-3))
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert len(lrs) == steps and all(np.isfinite(lrs))
    if steps >= 20:
        assert max(lrs) == pytest.approx(1e-3, rel=0.05) and lrs[-1] < 1e-4  # warm up, then anneal


def test_training_pool_gives_the_region_scans_their_share():
    from spinelabel.training.sampling import TrainingScan
    from spinelabel.training.train import TrainSettings, training_pool

    def scan(name, levels):
        return TrainingScan(name, np.zeros((2, 2, 2), np.float32), np.ones(3), list(levels), np.zeros((len(levels), 3)))

    lumbar = [scan(f"l{i}", ("L1", "L2")) for i in range(8)]
    cervical = [scan(f"c{i}", ("C3", "C4")) for i in range(2)]
    phantoms = [scan(f"p{i}", ("C2", "C3")) for i in range(5)]
    pool, w = training_pool(lumbar + cervical, phantoms, "cervical",
                            TrainSettings(synthetic_fraction=0.35, region_fraction=0.35))
    assert len(pool) == 15 and np.isclose(w.sum(), 1.0)
    np.testing.assert_allclose([w[:8].sum(), w[8:10].sum(), w[10:].sum()], [0.30, 0.35, 0.35])
    np.testing.assert_allclose(w[8:10], 0.175)  # equal within a group
    _, uniform = training_pool(lumbar + cervical, [], "cervical", TrainSettings())
    np.testing.assert_allclose(uniform, 0.1)
    with pytest.raises(ValueError):
        training_pool(lumbar + cervical, phantoms, "cervical", TrainSettings(synthetic_fraction=0.8, region_fraction=0.35))


@pytest.mark.parametrize("taken", ["synth-cervical-0001", "synth-cervical-0002/image.nii.gz"])
def test_synth_refuses_a_taken_case_before_writing_any(tmp_path, capsys, taken):
    """A file where case 1's folder goes (or a folder where case 2's image goes): one line, and no case written
    (before, case 0 was written and the run stopped at case 1)."""
    out = tmp_path / "out"
    (out / taken).parent.mkdir(parents=True, exist_ok=True)
    if taken.endswith(".nii.gz"):
        (out / taken).mkdir()
    else:
        (out / taken).write_text("not a folder")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main(["synth", str(out), "--region", "cervical", "--n", "3", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "synth-cervical-000" in err, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
