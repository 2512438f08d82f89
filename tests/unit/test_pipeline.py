"""The pipeline with a dummy network: geometry from any orientation, DICOM vs NIfTI."""

import numpy as np
import pytest
import torch

from spinelabel.errors import InputError, NothingFoundError
from spinelabel.geometry import Volume, reorient
from spinelabel.io import load_image
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.pipeline import Labeler
from spinelabel.testing.dummy import BlobNet, blob_spine, blob_volume, dummy_config


@pytest.mark.parametrize("codes", ["RAS", "PIR", "LPS", "IPR"])
def test_positions_come_back_in_world_mm_from_any_orientation(codes):
    vol, centres = blob_spine()
    result = Labeler(dummy_config(), BlobNet()).label(reorient(vol, codes))
    found = np.array([v.position_mm for v in result.vertebrae])
    assert len(found) == len(centres)
    # cranio-caudal order, each within 1 mm of the true centre
    np.testing.assert_allclose(found, centres, atol=1.0)
    # voxel indices refer to the array as given
    re = reorient(vol, codes)
    np.testing.assert_allclose(re.voxel_to_world(np.array([v.voxel for v in result.vertebrae])), found, atol=1e-6)


def test_labels_are_consecutive_levels_of_the_region():
    vol, _ = blob_spine()
    labels = [v.label for v in Labeler(dummy_config(), BlobNet()).label(vol).vertebrae]
    chain = list(Labeler(dummy_config(), BlobNet()).region.levels)
    start = chain.index(labels[0])
    assert labels == chain[start : start + len(labels)]


def test_dicom_and_nifti_give_the_same_world_positions(tmp_path):
    vol, _ = blob_spine()
    sagittal = reorient(vol, "PIL")  # slices along array axis 2 = across the body, as DICOM stores them
    write_dicom_series(sagittal, tmp_path / "dicom")
    from spinelabel.io.nifti import save_nifti

    save_nifti(sagittal, tmp_path / "scan.nii.gz")
    labeler = Labeler(dummy_config(), BlobNet())
    from_dicom = labeler.label(load_image([tmp_path / "dicom"]).volume)
    from_nifti = labeler.label(load_image([tmp_path / "scan.nii.gz"]).volume)
    a = np.array([v.position_mm for v in from_dicom.vertebrae])
    b = np.array([v.position_mm for v in from_nifti.vertebrae])
    assert a.shape == b.shape == (5, 3)
    np.testing.assert_allclose(a, b, atol=0.1)


class SilentNet(BlobNet):
    """A network that sees no vertebra anywhere."""

    def forward(self, x):
        return torch.cat([torch.full_like(x, -10.0), torch.zeros_like(x)], dim=1)


def test_blank_image_reports_nothing_found():
    vol = Volume(np.random.default_rng(0).uniform(0, 0.2, (40, 100, 100)).astype(np.float32), np.eye(4))
    with pytest.raises(NothingFoundError, match="no vertebrae found"):
        Labeler(dummy_config(), SilentNet()).label(vol)


def test_unanchored_labels_are_returned_but_flagged():
    """Blobs with no level evidence are vertebrae, but their names are not sure: every label is flagged."""
    vol, centres = blob_spine()
    result = Labeler(dummy_config(min_confident=2), BlobNet()).label(vol)
    assert len(result.vertebrae) == len(centres)
    assert all(v.confidence < 0.5 for v in result.vertebrae)
    assert any("low confidence" in w.text for w in result.warnings if w.code == "low-confidence")


class LevelNet(BlobNet):
    """BlobNet whose level channel says every blob is near one level (ordinal relative to L3)."""

    def __init__(self, level: str):
        super().__init__()
        from spinelabel.anatomy import ordinal

        self.offset = ordinal(level) - 22.0

    def forward(self, x):
        out = super().forward(x)
        return torch.cat([out[:, :1], torch.full_like(x, self.offset)], dim=1)


def test_region_for_levels():
    from spinelabel.pipeline import region_for_levels

    assert region_for_levels(["C1", "C2", "C3", "C4", "C5"]) == "cervical"
    assert region_for_levels(["C6", "C7", "T1", "T2"]) == "cervical"
    assert region_for_levels(["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]) == "lumbar"
    assert region_for_levels(["T6"]) == "lumbar"
    assert region_for_levels(["C2", "C3", "T9", "L1"]) == "whole"


@pytest.mark.parametrize(
    ("levels", "training", "checker"),
    [
        (["T12", "L1", "L2"], "cervical", "lumbar"),  # a lumbar scan in a cervical set: the lumbar model
        (["C3", "C4", "C5"], "cervical", "cervical"),
        (["C3", "C4", "C5"], "whole", "whole"),  # the same shipped model: the training region's chain
        (["C3", "C4", "C5"], "lumbar", "cervical"),
        (["T12", "L1", "L2"], "lumbar", "lumbar"),
        (["C2", "T9", "L1"], "lumbar", "whole"),
    ],
)
def test_checking_region_follows_the_labels_where_another_model_serves_them(levels, training, checker):
    from spinelabel.pipeline import checking_region

    assert checking_region(levels, training) == checker


@pytest.mark.parametrize(("level", "region"), [("C4", "cervical"), ("L3", "lumbar")])
def test_auto_labeler_picks_the_region_the_survey_sees(level, region):
    from spinelabel.pipeline import AutoLabeler

    spacing = 20.0 if region == "cervical" else 36.0
    vol, _ = blob_spine(n=4, spacing_mm=spacing, margin_mm=0.6 * spacing)  # no room for more vertebrae
    cfg = dummy_config(level_sd=0.7)
    survey = Labeler(cfg, LevelNet(level), "whole")
    by_region = {r: Labeler(cfg, LevelNet(level), r) for r in ("lumbar", "cervical", "whole")}
    auto = AutoLabeler(survey, by_region)
    assert auto.choose_region(vol) == region
    result = auto.label(vol)
    assert result.region == region
    assert all(v.label[0] == level[0] for v in result.vertebrae)


def test_the_region_survey_reads_its_confident_names_though_it_names_no_anchor(monkeypatch):
    """The whole-chain survey's anchor is C2, so on a lumbar scan its names are unanchored; the ceiling on unanchored
    confidences is about the count, not about which levels are in view: the survey decides from the chain's own
    confidences, as before the ceiling (detections of T12-L3 with sharp level estimates, no offset to doubt them)."""
    from dataclasses import replace

    from spinelabel.anatomy import ordinal, typical_spacing_mm
    from spinelabel.labeling import Candidate
    from spinelabel.pipeline import AutoLabeler

    levels, z = ("T12", "L1", "L2", "L3"), [0.0]
    for upper, lower in zip(levels, levels[1:]):
        z.append(z[-1] - typical_spacing_mm(upper, lower))
    found = [Candidate(np.array([0.0, 0.0, zz]), 0.9, float(ordinal(lv)), 0.3) for lv, zz in zip(levels, z)]
    survey = Labeler(dummy_config(), SilentNet(), "whole")
    survey.params = replace(survey.params, level_offset_grid=(0.0,))
    monkeypatch.setattr(survey, "detect", lambda volume: found)
    capped = survey.name(found)
    assert [v.label for v in capped.vertebrae] == list(levels)
    assert max(v.confidence for v in capped.vertebrae) < 0.5  # the ceiling holds in the survey's own labeling
    read = []
    name = survey.name
    monkeypatch.setattr(survey, "name", lambda candidates, params=None: read.append(name(candidates, params)) or read[-1])
    auto = AutoLabeler(survey, {})  # type: ignore[arg-type]
    assert auto.choose_region(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))) == "lumbar"
    (first,) = read
    assert [v.label for v in first.vertebrae] == list(levels) and min(v.confidence for v in first.vertebrae) >= 0.5


def test_the_region_survey_does_not_apply_the_refusal_checks():
    """A survey whose own `label` would refuse the image still tells the region; the chosen labeler decides."""
    from dataclasses import replace

    from spinelabel.errors import NothingFoundError
    from spinelabel.pipeline import AutoLabeler

    vol, _ = blob_spine(n=4, spacing_mm=36.0, margin_mm=20.0)
    cfg = dummy_config(level_sd=0.7)
    strict = replace(cfg, detection=replace(cfg.detection, min_confident=100))  # can never be met
    survey = Labeler(strict, LevelNet("L3"), "whole")
    with pytest.raises(NothingFoundError):
        survey.label(vol)
    auto = AutoLabeler(survey, {r: Labeler(cfg, LevelNet("L3"), r) for r in ("lumbar", "cervical", "whole")})
    assert auto.choose_region(vol) == "lumbar"
    assert auto.label(vol).region == "lumbar"


class SureOf:
    """A labeler that answers ``labeler``'s names, each at ``confidence`` (a fallback sure of what it reads)."""

    def __init__(self, labeler: Labeler, confidence: float):
        self.labeler, self.confidence = labeler, confidence

    def label(self, volume, candidates=None):
        from dataclasses import replace

        result = self.labeler.label(volume, candidates)
        return replace(result, vertebrae=[replace(v, confidence=self.confidence) for v in result.vertebrae])


def test_auto_asks_the_lumbar_labeler_when_the_survey_sees_nothing():
    """A survey blind to the image (the cervical model on a STIR lumbar scan) no longer ends the reading."""
    from spinelabel.pipeline import FALLBACK_REGION, AutoLabeler

    vol, _ = blob_spine(n=4, spacing_mm=36.0, margin_mm=20.0)
    cfg = dummy_config(level_sd=0.7)
    survey = Labeler(cfg, SilentNet(), "whole")
    lumbar = SureOf(Labeler(cfg, LevelNet("L5"), FALLBACK_REGION), 0.9)
    auto = AutoLabeler(survey, {"lumbar": lumbar, "cervical": survey, "whole": survey})  # type: ignore[dict-item]
    assert auto.choose_region(vol) == "lumbar"
    result = auto.label(vol)
    assert result.region == "lumbar"
    assert [v.label for v in result.vertebrae] == [v.label for v in lumbar.label(vol).vertebrae]
    assert "S1" in [v.label for v in result.vertebrae]


@pytest.mark.parametrize("net", ["silent", "unsure", "unanchored"])
def test_auto_refuses_when_the_fallback_does_not_name_s1_with_confidence(net):
    """A fallback that finds nothing, is unsure of every name, or is sure without the sacrum may not decide."""
    from spinelabel.pipeline import AutoLabeler

    vol, _ = blob_spine(n=4, spacing_mm=36.0, margin_mm=20.0)
    cfg = dummy_config(level_sd=0.7)
    lumbar = {
        "silent": Labeler(cfg, SilentNet(), "lumbar"),
        "unsure": Labeler(cfg, LevelNet("L5"), "lumbar"),  # L4-S1, every name below 0.5
        "unanchored": SureOf(Labeler(cfg, LevelNet("L3"), "lumbar"), 0.9),  # L2-L4 at 0.9
    }[net]
    if net != "silent":
        labels = [(v.label, v.confidence) for v in lumbar.label(vol).vertebrae]
        assert labels and (net == "unanchored") == all(c >= 0.5 for _, c in labels)
        assert (net == "unsure") == ("S1" in dict(labels))
    survey = Labeler(cfg, SilentNet(), "whole")
    auto = AutoLabeler(survey, {"lumbar": lumbar, "cervical": survey, "whole": survey})  # type: ignore[dict-item]
    with pytest.raises(NothingFoundError, match=r"no vertebrae found: is this a sagittal spine MR\? \(whole survey; "):
        auto.label(vol)
    with pytest.raises(NothingFoundError):
        auto.choose_region(vol)


class AnchorNet(BlobNet):
    """BlobNet with a third output: 'anchor' everywhere below world z = -110 mm (image row based)."""

    def forward(self, x):
        out = super().forward(x)
        rows = torch.arange(x.shape[2], dtype=x.dtype)[None, None, :, None].expand_as(x)
        anchor = torch.where(rows > rows.max() * 0.6, 5.0, -5.0)
        return torch.cat([out, anchor], dim=1)


def test_candidates_carry_the_anchor_probability():
    from spinelabel.detection import candidates_from_heatmaps, predict_heatmaps

    vol, centres = blob_spine()
    cfg = dummy_config()
    maps = predict_heatmaps(vol, cfg, AnchorNet())
    assert maps.anchor is not None and maps.anchor.shape == maps.heat.shape
    cands = sorted(candidates_from_heatmaps(maps, cfg), key=lambda c: -c.position[2])
    assert len(cands) == len(centres)
    anchors = [c.anchor for c in cands]
    assert anchors[0] < 0.05 and anchors[-1] > 0.95  # the top blob is not in the anchor zone, the bottom one is
    # a two-output model gives no anchor
    assert all(c.anchor is None for c in candidates_from_heatmaps(predict_heatmaps(vol, cfg, BlobNet()), cfg))


@pytest.mark.parametrize("codes", ["RAS", "PIR", "LPS"])
def test_candidates_know_how_much_image_lies_above_and_below(codes):
    from spinelabel.detection import candidates_from_heatmaps, predict_heatmaps

    vol, centres = blob_spine(n=3)  # the image spans world z -200.5 .. 19.5 mm
    cfg = dummy_config()
    cands = candidates_from_heatmaps(predict_heatmaps(reorient(vol, codes), cfg, BlobNet()), cfg)
    cands = sorted(cands, key=lambda c: -c.position[2])
    assert len(cands) == 3
    up = np.array([c.room_mm[0] for c in cands])
    down = np.array([c.room_mm[1] for c in cands])
    # the model frame resamples to 2 mm pixels, so its edges may move by up to a pixel
    np.testing.assert_allclose(up, 19.5 - centres[:, 2], atol=2.0)
    np.testing.assert_allclose(down, centres[:, 2] + 200.5, atol=2.0)


def test_many_strong_detections_that_form_no_spine_are_refused():
    """A 3 x 5 grid of bodies: any chain explains at most 3 of 15 strong detections."""
    grid = np.array([[0.0, y, z] for z in (-40.0, -76.0, -112.0) for y in (-40.0, -20.0, 0.0, 20.0, 40.0)])
    labeler = Labeler(dummy_config(), BlobNet())
    with pytest.raises(NothingFoundError, match=r"strong detections along the best chain.*contrast the model was not"):
        labeler.label(blob_volume(grid))
    # the middle column alone is a spine
    assert len(labeler.label(blob_volume(grid[grid[:, 1] == 0.0])).vertebrae) == 3


def test_strong_detections_beyond_the_chain_ends_do_not_refuse_it():
    """A 3-body spine 78 mm above 18 strong blobs: 3 of 21 strong detections in all, 3 of 3 along the chain.

    The blobs' rows lie 15 mm apart, closer than any two vertebrae (at 20 mm
    they made an equally good T6-T8 chain, a tie broken by rounding).
    """
    spine = np.array([[0.0, 0.0, z] for z in (-10.0, -46.0, -82.0)])
    clutter = np.array([[0.0, y, z] for z in (-160.0, -175.0, -190.0) for y in (-50.0, -30.0, -10.0, 10.0, 30.0, 50.0)])
    labeler = Labeler(dummy_config(), BlobNet())
    volume = blob_volume(np.vstack([spine, clutter]))
    assert sum(c.score >= 0.5 for c in labeler.detect(volume)) == 21  # the old count would refuse: 3 / 21 < 0.25
    found = np.array([v.position_mm for v in labeler.label(volume).vertebrae])
    np.testing.assert_allclose(found, spine, atol=1.5)


def test_within_chain_span_measures_along_the_chain():
    from spinelabel.pipeline import within_chain_span

    chain = np.array([[0.0, 0.0, 0.0], [0.0, 5.0, -30.0], [0.0, 0.0, -60.0]])  # mean spacing 30 mm: margin 15
    points = np.array([[40.0, 40.0, 14.0], [0.0, 0.0, 16.0], [-20.0, 9.0, -74.0], [0.0, 0.0, -76.0], [3.0, 0.0, -30.0]])
    np.testing.assert_array_equal(within_chain_span(points, chain), [True, False, True, False, True])
    np.testing.assert_array_equal(within_chain_span(points, chain[::-1]), [True, False, True, False, True])
    assert within_chain_span(points, chain[:1]).all()  # no length: nothing is left out
    assert within_chain_span(points, np.zeros((3, 3))).all()
    assert within_chain_span(np.zeros((0, 3)), chain).shape == (0,)


def test_reader_warnings_reach_the_result(tmp_path):
    """A DICOM series with a missing slice is labeled, and the result says so first."""
    from spinelabel.pipeline import label_loaded

    vol, _ = blob_spine()
    files = write_dicom_series(reorient(vol, "PIL"), tmp_path / "dicom")
    files[len(files) // 2].unlink()  # one slice lost in transfer
    loaded = load_image([tmp_path / "dicom"])
    result = label_loaded(Labeler(dummy_config(), BlobNet()), loaded)
    assert result.vertebrae
    assert result.warnings[0].code == "missing-slices" and "1 slice(s) missing" in result.warnings[0].text


def test_labeling_settings_can_differ_per_region():
    """One model, two regions: the per-region entry overrides the model-wide one for its region only."""
    from spinelabel.pipeline import labeling_overrides

    labeling = {"level_offset_sd": 0.8, "regions": {"whole": {"level_offset_grid": [0.0], "level_offset_sd": 2.0}}}
    assert labeling_overrides(labeling, "cervical") == {"level_offset_sd": 0.8}
    assert labeling_overrides(labeling, "whole") == {"level_offset_sd": 2.0, "level_offset_grid": (0.0,)}
    assert labeling_overrides(None, "lumbar") == {}
    from dataclasses import replace

    config = replace(dummy_config(), labeling=labeling)
    net = BlobNet()
    assert Labeler(config, net, "whole").params.level_offset_grid == (0.0,)
    assert len(Labeler(config, net, "cervical").params.level_offset_grid) > 1
    assert labeling == {"level_offset_sd": 0.8, "regions": {"whole": {"level_offset_grid": [0.0], "level_offset_sd": 2.0}}}


@pytest.mark.parametrize(("trained", "asked", "ok"), [
    ("cervical", "lumbar", False), ("lumbar", "cervical", False), ("lumbar", "whole", False),
    ("cervical", "whole", True), ("lumbar", "lumbar", True),
])  # fmt: skip
def test_a_model_labels_only_the_regions_it_was_trained_for(trained, asked, ok):
    """``--model`` of one region with ``--region`` of another: refused in one line, not quietly misnamed."""
    from spinelabel.errors import InputError
    from spinelabel.models import PACKAGE_DIR
    from spinelabel.pipeline import make_labeler

    model = PACKAGE_DIR / trained
    if ok:
        assert make_labeler(asked, model).region.name == asked
        return
    with pytest.raises(InputError, match=f"was trained for --region {trained}: it cannot label --region {asked}"):
        make_labeler(asked, model)


class TurnedLabeler(Labeler):
    """A labeler whose chain model names the upright blob spine with ``given`` and any image turned head to foot
    (``geometry.turned_head_foot``: RIP voxel order) with ``turned`` confidence, counting the passes."""

    def __init__(self, given: float, turned: float, turned_is_spine: bool = True):
        super().__init__(dummy_config(), BlobNet())
        self.given, self.turned, self.turned_is_spine, self.passes = given, turned, turned_is_spine, 0

    def name(self, candidates, params=None):
        from dataclasses import replace

        result = super().name(candidates, params)
        self.passes += 1
        conf = self.given if self.passes == 1 else self.turned
        if self.passes > 1 and not self.turned_is_spine:
            return replace(result, vertebrae=[])  # check_spine refuses it
        return replace(result, vertebrae=[replace(v, confidence=conf) for v in result.vertebrae], warnings=[])


@pytest.mark.parametrize("given, turned, warned", [(0.9, 0.6, False), (0.6, 0.9, True), (0.7, 0.7, True)])
def test_a_sure_labeling_is_checked_against_the_image_turned_head_to_foot(given, turned, warned):
    vol, centres = blob_spine()
    labeler = TurnedLabeler(given, turned)
    result = labeler.label(vol)
    assert labeler.passes == 2  # the second pass ran, on the turned image
    assert result.upside_down_check == "done"
    assert len(result.vertebrae) == len(centres)
    assert ("upside-down" in [w.code for w in result.warnings]) is warned
    # the check adds a warning and changes no name or confidence
    assert [v.confidence for v in result.vertebrae] == pytest.approx([given] * len(centres))


def test_an_unsure_labeling_or_a_turned_image_that_is_no_spine_is_not_questioned():
    vol, _ = blob_spine()
    unsure = TurnedLabeler(0.3, 0.9)
    result = unsure.label(vol)
    assert "upside-down" not in [w.code for w in result.warnings] and result.upside_down_check == "not needed"
    assert unsure.passes == 1  # no second pass for a labeling the reader checks anyway
    refused = TurnedLabeler(0.6, 0.9, turned_is_spine=False)
    result = refused.label(vol)
    assert "upside-down" not in [w.code for w in result.warnings] and result.upside_down_check == "done"
    assert refused.passes == 2


def test_the_upside_down_check_switched_off_runs_no_second_pass_and_says_so():
    vol, centres = blob_spine()
    trusted = TurnedLabeler(0.6, 0.9)  # the turned image would win: the check would warn
    trusted.check_orientation = False
    result = trusted.label(vol)
    assert trusted.passes == 1
    assert "upside-down" not in [w.code for w in result.warnings] and result.upside_down_check == "skipped"
    assert [v.confidence for v in result.vertebrae] == pytest.approx([0.6] * len(centres))


def test_the_turned_pass_names_the_plain_candidates_without_the_look_beyond(monkeypatch):
    """The look beyond the caudal end runs for the labeling reported, not for the turned image (half its time)."""
    from dataclasses import replace

    vol, _ = blob_spine()
    labeler = TurnedLabeler(0.6, 0.4)
    labeler.config = replace(labeler.config, detection=replace(labeler.config.detection, caudal_turns_deg=(20.0,)))
    looks = []

    def look(self, frame, candidates, result, counting=None):
        looks.append(frame.shape)
        return candidates, result

    monkeypatch.setattr(Labeler, "_look_beyond", look)
    result = labeler.label(vol)
    assert result.upside_down_check == "done" and labeler.passes == 2
    assert len(looks) == 1  # the first pass looked, the turned one did not


@pytest.mark.parametrize("model", ["", "  "])
def test_an_empty_model_name_is_refused_not_read_as_the_shipped_model(model, tmp_path, capsys):
    """``--model "$MODEL"`` with the variable unset must not label with the shipped model in silence."""
    from spinelabel.cli import main
    from spinelabel.errors import InputError
    from spinelabel.pipeline import make_labeler

    with pytest.raises(InputError, match="--model is empty"):
        make_labeler("lumbar", model)
    rc = main(["evaluate-model", str(tmp_path / "none.csv"), "--model", model])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model is empty" in err[0], err


def _counted(positions, names, frame):
    from spinelabel.carried_count import CountingSeries

    return CountingSeries("upper series", tuple(names), np.asarray(positions, float), frame, "ANON")


def test_a_carried_count_names_a_chain_its_own_evidence_cannot_count(tmp_path):
    """The dummy network gives no level estimates and no anchor: alone, the names are a guess below 0.5;
    with a count carried from another series of the same frame of reference, they follow it."""
    from spinelabel.pipeline import label_loaded

    vol, centres = blob_spine()
    write_dicom_series(reorient(vol, "PIL"), tmp_path / "lower", frame_of_reference_uid="1.2.3.4")
    loaded = load_image([tmp_path / "lower"])
    labeler = Labeler(dummy_config(), BlobNet())
    alone = label_loaded(labeler, loaded)
    assert max(v.confidence for v in alone.vertebrae) < 0.5
    assert [v.label for v in alone.vertebrae] == ["L2", "L3", "L4", "L5", "S1"]
    truth = ("L1", "L2", "L3", "L4", "L5")
    above = centres[0] + (centres[0] - centres[1])  # the counting series also shows the vertebra above: T12
    counting = _counted([above, *centres[:3]], ("T12", *truth[:3]), "1.2.3.4")
    result = label_loaded(labeler, loaded, counting)
    assert [v.label for v in result.vertebrae] == list(truth)
    assert min(v.confidence for v in result.vertebrae) >= 0.5
    assert result.warnings[0].code == "count-carried" and "3 of its vertebrae" in result.warnings[0].text
    assert result.warnings[0].text.endswith("named L1, L2, L3")
    assert result.warnings[1].code == "count-unconfirmed"  # alone: L2-S1, every name below 0.5
    assert not {"no-anchor", "low-confidence"} & {w.code for w in result.warnings}
    with pytest.raises(InputError, match="another frame of reference"):
        label_loaded(labeler, loaded, _counted(centres[:3], truth[:3], "1.2.3.5"))
    with pytest.raises(InputError, match="none of its vertebrae"):  # the counting series ends above this one
        label_loaded(labeler, loaded, _counted(centres[:3] + [0.0, 0.0, 400.0], truth[:3], "1.2.3.4"))
