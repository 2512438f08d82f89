"""Train a detection model from annotated scans (images + named points)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..models import DetectionSettings, ModelConfig, save_model
from ..preprocessing import CANONICAL_AXCODES, INTENSITY_PERCENTILES
from .sampling import LEVEL_OFFSET, TrainingScan, batch
from .spec import SamplerSpec


#: Network outputs of trained models: heatmap, level, anchor heatmap.
OUT_CHANNELS = 3

#: Lower bound on the learned sd of inter-vertebral distances (mm): healthy
#: training spines vary by ~2 mm, but collapsed or wedged vertebrae and
#: listhesis in clinical scans shift centres by more.
SPACING_SD_FLOOR_MM = 3.5

#: Slice step of the model frame (mm; ``FrameSpec.slice_step_mm``): the
#: network sees one sagittal slice every 2 mm of a finer scan (a thicker one
#: keeps its own step), about 20 through a lumbar body (40-50 mm wide), enough
#: to find its lateral centre from the run of slices crossing it, at half the
#: passes of a 1 mm 3D scan. Chosen, not tuned.
MODEL_SLICE_STEP_MM = 2.0

#: Trust in the network's level estimate (a Gaussian sd, in levels) written
#: into each model's config for the chain model (``labeling.Candidate``). One
#: scan's estimates err together (myoseg-32: all about +0.8 of a level), and
#: with 0.5 five consistent wrong estimates would outweigh the anchor
#: (docs/NOTES.md, second session: reasoned, not measured); the scan-wide
#: level offset of the chain model now takes the shared part of the error.
LEVEL_SD = 1.0


@dataclass(frozen=True)
class TrainSettings:
    """The optimisation of one training run. The defaults below were chosen once (first sessions) and not tuned
    since: recipes change the data and augmentation (``SamplerSpec``), judged by leave one source out."""

    #: Optimiser steps (AdamW, one-cycle learning rate). The shipped lumbar
    #: model had 5000 from scratch and 2000 fine-tuning.
    steps: int = 4000
    #: Crops per step: enough for BatchNorm's batch statistics, small enough
    #: for a step of about half a second on this project's 2-core CPU.
    batch_size: int = 16
    #: Peak learning rate of the one-cycle schedule (AdamW); fine-tuning a
    #: shipped model on a hospital's labels uses a quarter of it (docs/cervical.md).
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    #: Extra weight of positive pixels in the heatmap and anchor BCE: body
    #: plateaus cover a few percent of a crop, so without it the network
    #: learns to say "no" everywhere.
    heatmap_positive_weight: float = 10.0
    #: Weight of the level regression (smooth L1 in levels, on the pixels
    #: near annotated centres) against the heatmap BCE.
    level_loss_weight: float = 0.2
    anchor_loss_weight: float = 1.0
    seed: int = 0
    threads: int = 2
    #: U-Net widths per depth (``models.network``): narrow early layers keep
    #: CPU inference fast; six depths give the receptive field the level
    #: regression needs to see the sacrum or the rib cage.
    channels: tuple[int, ...] = (8, 16, 32, 64, 96, 128)
    #: Share of training crops drawn from synthetic phantoms (0 = real scans only).
    synthetic_fraction: float = 0.0
    #: Size of the phantom pool drawn once before training.
    synthetic_scans: int = 80
    #: Share of training crops from the real scans whose labels lie in the
    #: model's own region (``anatomy.region_for_levels``), e.g. the few real
    #: cervical scans among many lumbar ones; the rest of the real share goes
    #: to the other real scans. 0: every real scan is drawn equally often.
    region_fraction: float = 0.0
    #: Fine-tuning: a model (shipped region name or directory) whose weights
    #: start the optimisation instead of a random initialisation; None = fresh.
    init: str | None = None
    #: Torch device of the optimisation ("cpu", "cuda", "cuda:1"); crops are
    #: always drawn on the CPU and the returned network is always on the CPU.
    device: str = "cpu"
    #: Arithmetic of the network's passes, one of ``PRECISIONS``: "fp32"
    #: throughout, or "bf16": the forward pass under bfloat16 autocast with the
    #: activations in channels-last order (``_precision``). Weights, optimiser
    #: and losses stay float32; the saved network is float32 either way.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: not one of {', '.join(PRECISIONS)}")


#: ``TrainSettings.precision`` values. bf16 is for CPUs with bfloat16 matrix
#: units (AMX, AVX-512 BF16) and GPUs: on this project's CPU (AMX) a lumbar
#: training step, crops included, took 0.31 s against 0.60 s in fp32 at one
#: thread with a second training beside it (docs/training.md); elsewhere it
#: is emulated and slower.
PRECISIONS = ("fp32", "bf16")


#: Detection settings that differ from the defaults per region. Cervical
#: centroids are 15-20 mm apart (lumbar 32-40 mm), so peaks closer than the
#: lumbar 9 / 12 mm suppression and merge distances can be distinct vertebrae
#: (C1-C2 in particular); about half the smallest spacing is used. C1's
#: response fuses with C2's into one ridge, which the level map splits
#: (``DetectionSettings.split_levels``). The lumbar model looks again below
#: the chain's caudal end on slices turned by 20 deg either way
#: (``DetectionSettings.caudal_turns_deg``): an S1 behind a steep or cut
#: sacrum that the plain pass misses is found there, named by the chain.
#: Measured against a criterion fixed in advance (docs/NOTES.md, sixteenth
#: session): leave one source out over two seeds 82 and 30 scans right
#: (78, 28), robustness 302 of 336 (299). The cervical model does not: on
#: errsm20 the turned candidates lie 7-10 mm from the dim junction bodies.
#: Where the lumbar chain skips a level it looks for a body split in two by
#: an artefact (``DetectionSettings.split_body_max_mm``, 26 mm: below every
#: T11-L5 step of the shared scans; docs/NOTES.md, forty-ninth session).
REGION_DETECTION: dict[str, dict[str, Any]] = {
    "lumbar": {"caudal_turns_deg": (-20.0, 20.0), "split_body_max_mm": 26.0},
    "cervical": {"inplane_nms_mm": 7.0, "merge_inplane_mm": 8.0, "split_levels": True},
    "whole": {"inplane_nms_mm": 7.0, "merge_inplane_mm": 8.0, "split_levels": True},
}

#: Labeling settings that differ from ``labeling.LabelingParams`` per model
#: (``"regions"``: per region it labels). An anchor output is only used where it
#: was trained on real anchors: the lumbar model's S1 (annotated on 63 real
#: scans) and the cervical model's C2 (three real subjects); the cervical
#: model's S1 comes from phantoms only (its output at a phantom's S1 is ~0.03,
#: "not S1"), so whole-spine labeling uses C2 alone (``anchor_levels``: 11 of 12
#: development phantoms of seed 2000 right, 10 of 12 with both anchors). The
#: scan-wide level offset leaves the count to the anchor (and the field of
#: view), so whole-spine labeling keeps one level estimate per candidate as
#: evidence instead: a whole-spine field of view without C2 has no trusted
#: anchor, and with the offset 4 of the 6 benchmark phantoms (seed 1000) were
#: named a level off, half of those names unflagged (docs/NOTES.md, fourteenth
#: session). Nor does it use the learned step directions: they exist only for
#: T11-S1 (real lumbar scans), whole-spine phantoms gave the same names with
#: them (5/6, 95.1 %, thirteenth session) and the tilt grid made whole-spine
#: labeling three times slower (8.5 s).
#: The cervical model keeps a left-out candidate's anchor output out of the
#: chain (``anchor_unassigned`` off): switched on for lumbar against a
#: criterion set in advance, on the three real cervical subjects it cost
#: errsm18 a false C1 on the original grid and one subject-condition of the
#: cervical robustness benchmark (11 of 30; docs/NOTES.md, twentieth session).
_WHOLE: dict[str, Any] = {"anchor_levels": ["C2"], "level_offset_grid": [0.0], "use_directions": False}
REGION_LABELING: dict[str, dict[str, Any]] = {
    "cervical": {"anchor_unassigned": False, "regions": {"whole": _WHOLE}},
    "whole": {"anchor_unassigned": False, "regions": {"whole": _WHOLE}},
}

#: Fields of view of the phantoms mixed into each region's training, with
#: their frequencies: lumbar phantoms teach S1 and the sacrum; cervical
#: training also sees whole-spine phantoms so C2 and the cervicothoracic
#: junction appear in context.
SYNTHETIC_FOV: dict[str, dict[str, float]] = {
    "lumbar": {"lumbar": 1.0},
    "cervical": {"cervical": 0.75, "whole": 0.25},
    "whole": {"whole": 0.5, "lumbar": 0.25, "cervical": 0.25},
}


#: Sampling and augmentation per region (``SamplerSpec`` fields), over the defaults.
#: C1 has no body, so its ring looks like nothing else the detector learns, and
#: C2 is the cervical anchor: both are one level in thirteen of a cervical
#: phantom, so crops are centred on each three times as often as on another
#: level. Cervical fields of view start anywhere from the posterior fossa to
#: the dens (the shared real subjects) or lower: the cranial edge is drawn as
#: often as the caudal one (``p_caudal_cut``, ``p_gap_cut``), so that C2 is
#: learned from its own shape and a body at the top edge is not taken for it.
#: Lumbar crops show posterior fusion hardware three times in ten
#: (``SamplerSpec.p_hardware``): leave one source out, four seeds from scratch
#: gained 5 scans of 50 a seed in the harder direction and held the other
#: (docs/RESULTS.md, "a recipe arm: fusion hardware"); its sizes are lumbar
#: ones, so the cervical and whole recipes stay without it.
REGION_SAMPLER: dict[str, dict[str, Any]] = {
    "lumbar": {"p_hardware": 0.3},
    **{
        region: {"centre_weights": (("C1", 3.0), ("C2", 3.0)), "p_cranial_cut": 0.25, "p_cranial_gap_cut": 0.1}
        for region in ("cervical", "whole")
    },
}


def sampler_spec(region: str) -> SamplerSpec:
    """The augmentation and sampling of a region's training."""
    return SamplerSpec(**REGION_SAMPLER.get(region, {}))


def _weighted_bce(logit, target, valid, positive_weight: float):
    import torch.nn.functional as F

    w = valid * (1.0 + positive_weight * target)
    return (F.binary_cross_entropy_with_logits(logit, target, reduction="none") * w).sum() / w.sum().clamp(min=1.0)


def _losses(out, heat, level, level_w, valid, anchor, settings: TrainSettings):
    """Total loss: heatmap and anchor BCE (masked by validity) plus the level regression."""
    import torch.nn.functional as F

    from ..models.network import OUT_ANCHOR, OUT_HEATMAP, OUT_LEVEL

    l_heat = _weighted_bce(out[:, OUT_HEATMAP : OUT_HEATMAP + 1], heat, valid, settings.heatmap_positive_weight)
    lev = out[:, OUT_LEVEL : OUT_LEVEL + 1]
    l_level = (F.smooth_l1_loss(lev, level, reduction="none", beta=0.5) * level_w).sum() / level_w.sum().clamp(min=1.0)
    l_anchor = _weighted_bce(out[:, OUT_ANCHOR : OUT_ANCHOR + 1], anchor, valid, settings.heatmap_positive_weight)
    return l_heat + settings.level_loss_weight * l_level + settings.anchor_loss_weight * l_anchor


#: Share of the steps spent warming the learning rate up (one-cycle schedule).
WARMUP_FRACTION = 0.05
#: Shorter runs (smoke tests) keep a constant learning rate: a one-cycle
#: schedule needs at least a couple of steps in each phase.
MIN_ONE_CYCLE_STEPS = 4


def _scheduler(opt, settings: TrainSettings):
    """One-cycle learning rate with at least two warm-up steps; constant for tiny runs."""
    import torch

    if settings.steps < MIN_ONE_CYCLE_STEPS:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    pct = min(max(WARMUP_FRACTION, 2.0 / settings.steps), 0.5)
    return torch.optim.lr_scheduler.OneCycleLR(opt, settings.learning_rate, total_steps=settings.steps, pct_start=pct)


def _initial_network(settings: TrainSettings):
    """A fresh UNet2D, or the network of ``settings.init`` (its channels must match)."""
    from ..errors import ModelError
    from ..models import load_model
    from ..models.network import UNet2D

    if settings.init is None:
        return UNet2D(channels=settings.channels, out_channels=OUT_CHANNELS)
    config, net = load_model(settings.init)
    if tuple(config.channels) != tuple(settings.channels) or config.out_channels != OUT_CHANNELS:
        raise ModelError(
            f"cannot fine-tune {settings.init}: its network ({config.channels}, {config.out_channels} outputs) "
            f"differs from the one trained here ({settings.channels}, {OUT_CHANNELS} outputs)"
        )
    return net


def train_network(
    scans: Sequence[TrainingScan],
    settings: TrainSettings = TrainSettings(),
    spec: SamplerSpec = SamplerSpec(),
    progress: Callable[[int, float], None] | None = None,
    weights: np.ndarray | None = None,
):
    """Optimise a fresh UNet2D on random augmented samples; returns the network (eval mode).

    ``weights`` (shape (len(scans),)) are the scans' sampling probabilities; uniform when None.
    """
    import torch

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    device = torch.device(settings.device)
    autocast, memory = _precision(settings.precision, device)
    net = _initial_network(settings).to(device, memory_format=memory)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched = _scheduler(opt, settings)
    net.train()
    for step in range(settings.steps):
        img, heat, level, level_w, valid, anchor = (
            torch.from_numpy(a).to(device) for a in batch(rng, list(scans), spec, settings.batch_size, weights)
        )
        with autocast:
            out = net(img.contiguous(memory_format=memory))
        loss = _losses(out.float(), heat, level, level_w, valid, anchor, settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step, loss.item())
    return net.to("cpu", memory_format=torch.contiguous_format).eval()


def _precision(precision: str, device: Any) -> tuple[Any, Any]:
    """The autocast context and the memory order of one of ``PRECISIONS`` on ``device``.

    Parameters
    ----------
    precision : str
        One of ``PRECISIONS``.
    device : torch.device
        Where the optimisation runs (its ``type`` picks the autocast).

    Returns
    -------
    autocast : torch.autocast
        bfloat16 autocast for "bf16" (matrix products and convolutions in
        bfloat16, reductions in float32); disabled for "fp32".
    memory : torch.memory_format
        ``channels_last`` for "bf16" (the layout oneDNN's bfloat16 kernels
        use without reordering), ``contiguous_format`` for "fp32", whose
        arithmetic is left exactly as it was.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: not one of {', '.join(PRECISIONS)}")
    bf16 = precision == "bf16"
    memory = torch.channels_last if bf16 else torch.contiguous_format
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), memory


def model_config(
    region: str,
    scans: Sequence[TrainingScan],
    points: Sequence[dict[str, np.ndarray]],
    settings: TrainSettings,
    spec: SamplerSpec,
    seconds: float,
    name: str | None = None,
    data: dict[str, Any] | None = None,
) -> ModelConfig:
    """The config shipped beside trained weights, with the shape model fitted on ``points``.

    A fine-tune (``settings.init``) keeps its starting model's shape model for
    the pairs ``points`` are too few to learn (``fit_shape_model``'s ``prior``).
    ``data``: what the scans came from (annotation sources, split file,
    cleaning and what it dropped), kept as ``training["data"]``.
    """
    from ..models import read_config, resolve_model_dir
    from ..shape_model import ShapeModel, fit_shape_model

    prior = ShapeModel.from_dict(read_config(resolve_model_dir(settings.init)).shape_model) if settings.init else None

    return ModelConfig(
        name=name or f"spinelabel-{region}",
        version=__version__,
        region=region,
        axcodes=CANONICAL_AXCODES,
        inplane_spacing_mm=spec.pixel_mm,
        slice_step_mm=MODEL_SLICE_STEP_MM,
        intensity_percentiles=INTENSITY_PERCENTILES,
        channels=settings.channels,
        level_offset=LEVEL_OFFSET,
        level_sd=LEVEL_SD,
        detection=DetectionSettings(**REGION_DETECTION.get(region, {})),
        shape_model=fit_shape_model(points, min_sd_mm=SPACING_SD_FLOOR_MM, prior=prior).to_dict(),
        training={
            "scans": [s.scan_id for s in scans],
            "data": dict(data or {}),
            "pseudo_labels": {s.scan_id: list(s.pseudo_levels) for s in scans if s.pseudo_levels},
            "settings": asdict(settings),
            "sampler": asdict(spec),
            "seconds": round(seconds, 1),
        },
        out_channels=OUT_CHANNELS,
        labeling=copy.deepcopy(REGION_LABELING.get(region, {})),
    )


def training_pool(
    real: Sequence[TrainingScan], phantoms: Sequence[TrainingScan], region: str, settings: TrainSettings
) -> tuple[list[TrainingScan], np.ndarray]:
    """All scans of one training run and how often each is drawn.

    Phantoms get ``settings.synthetic_fraction`` of the crops; the real scans
    whose labels lie in ``region`` get ``settings.region_fraction`` (when there
    are also real scans of other regions); every scan within a group is drawn
    equally often. A group without scans gives its share to the others.

    Returns
    -------
    pool : list of TrainingScan
        ``real`` followed by ``phantoms``.
    weights : ndarray, shape (len(pool),)
        Sampling probabilities, summing to 1.
    """
    from ..anatomy import region_for_levels
    from .synthetic_data import mixing_weights

    weights = mixing_weights(len(real), len(phantoms), settings.synthetic_fraction)
    in_region = np.array([region_for_levels(s.levels) == region for s in real], bool)
    if settings.region_fraction > 0 and in_region.any() and not in_region.all():
        real_share = float(weights[: len(real)].sum())
        if settings.region_fraction > real_share:
            raise ValueError(f"region_fraction {settings.region_fraction} + synthetic_fraction exceed 1")
        weights[: len(real)] = np.where(
            in_region, settings.region_fraction / in_region.sum(), (real_share - settings.region_fraction) / (~in_region).sum()
        )
    return [*real, *phantoms], weights


def train_and_save(
    scans: Sequence[TrainingScan],
    points: Sequence[dict[str, np.ndarray]],
    region: str,
    out_dir: Path,
    settings: TrainSettings = TrainSettings(),
    name: str | None = None,
    progress: Callable[[int, float], None] | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Train, fit the labeling shape model on the same annotations, and write a model directory.

    ``data`` describes where the scans came from (``model_config``).
    """
    spec = sampler_spec(region)
    t0 = time.time()
    phantoms: list[TrainingScan] = []
    if settings.synthetic_fraction > 0 and settings.synthetic_scans > 0:
        from .synthetic_data import synthetic_training_scans

        phantoms, _ = synthetic_training_scans(settings.synthetic_scans, SYNTHETIC_FOV[region], settings.seed)
    pool, weights = training_pool(scans, phantoms, region, settings)
    net = train_network(pool, settings, spec, progress, weights)
    # The shape model is fitted on the real annotations only: phantom spacings
    # come from the anatomical priors that fill in unlearned pairs anyway.
    config = model_config(region, scans, points, settings, spec, time.time() - t0, name, data)
    return save_model(Path(out_dir), config, net)
