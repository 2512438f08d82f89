"""The ranges of the training augmentation and the shapes of its targets (``sampling``), every one named."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SamplerSpec"]


@dataclass(frozen=True)
class SamplerSpec:
    """Augmentation ranges and target shapes (all lengths in mm unless _px)."""

    #: Crop side (pixels) and pixel size (mm): 256 mm square, about six
    #: lumbar levels with the sacrum or a neck from the skull base to T2, the
    #: context the level regression needs; the model's in-plane pixel
    #: (``FrameSpec.inplane_spacing_mm``).
    crop_px: int = 128
    pixel_mm: float = 2.0
    #: sd of each centre's Gaussian in the slice plane: 5 mm, a fifth of a
    #: lumbar body's height, so a body gives one peak and neighbours never merge.
    heatmap_sigma_px: float = 2.5
    #: The heatmap is at full height while the slab lies within this share of
    #: the level spacing from the centre, across the body: one slice cannot
    #: tell how far it is from the body's mid-plane, and a Gaussian target
    #: there gave peaks of 0.1 and 3-10 mm errors (docs/NOTES.md, first
    #: lumbar session); 0.3 of a 35 mm step is +-10 mm, the middle half of a
    #: lumbar body's 40-50 mm width.
    plateau_fraction: float = 0.3
    #: sd (mm) of the fall-off beyond that plateau: a slab just off the body's
    #: side still shows some of it.
    lateral_falloff_mm: float = 4.0
    #: The level map is a target within this radius of a centre (6 mm,
    #: inside the body).
    level_radius_px: float = 3.0
    #: Slab thickness (mm) averaged into a crop: 1 mm as a 3D acquisition
    #: reformatted, up to 5 mm as the thickest clinical 2D sagittal slices.
    slab_mm: tuple[float, float] = (1.0, 5.0)
    #: Zoom range: body size differs by about this much between small and
    #: large adults, and between pixel sizes the header may round.
    scale: tuple[float, float] = (0.85, 1.2)
    #: In-plane turn (deg) either way: posture and how the sagittal plane was
    #: planned on the localiser.
    rotation_deg: float = 20.0
    #: sd (mm) of the crop centre around the chosen vertebra: more than a
    #: level, so every level is seen at every place in the crop and the
    #: level is not read from the position.
    centre_jitter_mm: float = 45.0
    #: sd (mm) of the slab's lateral position around the spine's midline: most
    #: slabs cross the bodies (40-50 mm wide), some only their sides.
    lateral_jitter_mm: float = 14.0
    #: Share of slabs taken anywhere across the image (mostly outside the
    #: spine: negatives of the kind a full sagittal series has most of).
    p_random_slice: float = 0.2
    #: Share of crops of smooth random texture with no vertebra at all.
    p_negative: float = 0.04
    #: Half-width (mm) across the spine of the band beyond the first and last
    #: annotated vertebra where the loss is masked (``sampling._validity``):
    #: 35 mm either side of the line of centres holds the next body (~35 mm
    #: deep) and the canal behind it.
    unannotated_band_mm: float = 35.0
    #: Probability that the part of the spine caudal to a random annotated disc
    #: is moved rigidly: rotated by up to ``segment_rotation_deg`` about the disc
    #: (lumbosacral angle, steep sacrum, straightened or kyphotic segments) and
    #: slipped by up to ``segment_slip_mm`` front to back (spondylolisthesis).
    p_segment: float = 0.3
    #: Sacral slope varies from ~20 to ~70 deg between patients (Legaye et al.,
    #: Eur Spine J 7:99-103, 1998); +-25 deg about the shared scans' angles covers it.
    segment_rotation_deg: float = 25.0
    #: Grade I-II listhesis: a slip of up to about half a body depth (~15 mm lumbar);
    #: 8 mm keeps the chain recognisable while teaching that bodies need not line up.
    segment_slip_mm: float = 8.0
    #: Half-width of the band over which the move blends in at the disc (mm); the
    #: body centres lie >= 7 mm from their discs, so they move rigidly.
    segment_blend_mm: float = 3.0
    #: Probability that one annotated disc (a random one) is narrowed: the
    #: spine below it moves up along the spine by up to ``narrow_fraction`` of
    #: that step (a degenerate disc; discs are ~0.27 of a step, lumbar and
    #: cervical alike, so 0.2 leaves a sliver). Off by default (issue 11, class
    #: 4: a vertebra missed in a degenerated segment). With 0.25 and
    #: ``p_collapse`` 0.2, seed 3 left one source out gained (44/50 and 15/17
    #: against 43 and 14) but seed 4 lost (35/50 and 14/17 against 40 and 16),
    #: and the shipped fine-tune lost two held-out scans (25/28 against 27/28;
    #: docs/NOTES.md, seventeenth session): not shipped.
    p_narrow: float = 0.0
    narrow_fraction: float = 0.2
    #: Probability that one annotated body with a neighbour on each side is
    #: collapsed about its centre to a fraction ``collapse_height`` of its
    #: height, its front by up to ``collapse_wedge`` more than its back (a
    #: wedge or crush fracture, Genant grades 1-3 lose 20-40 % and more); the
    #: discs above and below stretch to fill, so no centre moves. Off by default.
    p_collapse: float = 0.0
    collapse_height: tuple[float, float] = (0.4, 0.9)
    collapse_wedge: float = 0.3
    #: Probability that the whole annotated chain is bent in the sagittal plane:
    #: every annotated disc turns the spine below it by an equal share of one
    #: total angle of up to ``bend_deg`` either way (``spine_moves.bend_moves``). Lumbar
    #: lordosis differs by tens of degrees between people and postures, and a
    #: network trained on one source read the level partly from it: on the
    #: other source its per-scan level bias followed the change of step angle
    #: from L1-L2 to L4-L5 (r = -0.73; docs/NOTES.md, fifteenth session). Off
    #: by default: with 0.5, one seed left one source out did not weaken that
    #: correlation (-0.71) and gained 1 scan net; not shipped.
    p_bend: float = 0.0
    #: Half-range of that total angle (deg): the L1-L5 angle of adults spans
    #: roughly 20-60 deg, so +-15 deg about a scan's own moves it across most of it.
    bend_deg: float = 15.0
    #: Probability that a crop is turned upside down (head-foot) after it is
    #: drawn, as an anchor negative (``sampling.turned_upside_down``): the
    #: bodies stay bodies, but no S1 is upright in it and its level is masked.
    #: An image stored upside down under an upright header (a feet-first
    #: patient registered head-first) is otherwise named in reverse, sure and
    #: unwarned in 5 of 28 held-out scans under lumbar v6, 4 under v7 (``benchmarks.upside_down``): the
    #: network does not know up from down. Off by default, and then no random
    #: number is drawn. One CPU seed each (docs/NOTES.md, forty-first session):
    #: 0.1 in the fine-tune kept 23 of the 28 sure names, 0.3 kept 6, with the
    #: upright benchmarks at parity. With ``p_hardware`` 0.3 as well, from
    #: scratch, four bf16 seeds of leave one source out lost about 6 of 50 and
    #: 2 of 17 scans a seed against the same seeds without (docs/NOTES.md,
    #: forty-third session), while ``p_hardware`` 0.3 alone gained scans (below),
    #: which points to the turned crops (not trained alone from scratch; an
    #: interaction of the two is not ruled out). Not shipped.
    p_upside_down: float = 0.0
    #: Probability that a crop shows posterior fusion hardware: pedicle screws
    #: in a run of annotated levels and a rod joining them, as signal voids
    #: with a bright pile-up rim (``hardware``; post-operative lumbar spines
    #: are a large share of clinical follow-up). Off by default, and then no
    #: random number is drawn. The sizes below are lumbar ones: a cervical
    #: recipe would need its own (lateral mass screws, anterior plates). At 0.3
    #: alone, from scratch, four bf16 seeds of leave one source out got more
    #: scans right than the same seeds without: zukic -> myoseg mean 43.8
    #: against 38.8, myoseg -> zukic 15.5 against 15.0, no unwarned wrong scan
    #: (docs/RESULTS.md, "a recipe arm: fusion hardware"); the fine-tune at 0.3
    #: took ``metal-severe`` from 9 to 14 of 28 (docs/NOTES.md, fortieth
    #: session; the shipped v7, another draw of it: 12). The lumbar recipe turns it on (``train.REGION_SAMPLER``,
    #: forty-fifth session). With ``p_upside_down`` 0.3 as well, leave one
    #: source out lost scans (above).
    p_hardware: float = 0.0
    #: Instrumented levels: one- and two-segment fusions (2-3 screws a side)
    #: are the common ones.
    hardware_levels: tuple[int, int] = (2, 3)
    #: Radius of a screw's void (mm): from a 6-7 mm screw's own radius (~3 mm,
    #: 1.5 T with metal-artefact reduction) to about twice its diameter (3 T
    #: without). The void is a distance in 3D, so a slice beside a screw
    #: already sees less of it.
    hardware_void_mm: tuple[float, float] = (3.0, 7.0)
    #: Radius of a rod's void (mm): from a 5.5-6 mm rod's own radius up, and
    #: never more than its screws' (rods are thinner and bloom less).
    hardware_rod_void_mm: tuple[float, float] = (3.0, 5.0)
    #: A screw's tip in front of the body centre (mm): screws reach the
    #: anterior third of a body ~30-35 mm deep.
    hardware_tip_anterior_mm: tuple[float, float] = (0.0, 12.0)
    #: A screw's head behind the body centre (mm): the pedicle (~20 mm) and the
    #: facet behind it, the head standing a few mm proud of the bone, where
    #: the rods run. Tip and head are drawn apart, so a screw spans 35-62 mm in
    #: the sagittal plane (40-55 mm lumbar screws and the head proud of the bone).
    hardware_head_posterior_mm: tuple[float, float] = (35.0, 50.0)
    #: Tip and head beside the midline (mm): lumbar pedicles lie ~20-25 mm
    #: either side, and screws converge medially towards their tips, so a
    #: midline slice sees little of a screw and a slice through a pedicle
    #: all of it.
    hardware_tip_lateral_mm: tuple[float, float] = (3.0, 10.0)
    hardware_head_lateral_mm: tuple[float, float] = (18.0, 28.0)
    #: A screw's turn in the sagittal plane from perpendicular to the spine
    #: (deg): straight-forward to anatomic (caudally aimed) trajectories.
    hardware_angle_deg: float = 15.0
    #: Width of the pile-up rim beyond a void (mm), and the least signal there
    #: (normalised, 1 = the scan's 99.5th percentile, about fluid on T2; crops
    #: are clipped at ``intensity_clip``): signal displaced out of the void
    #: adds to the tissue's, so the rim is never darker than the tissue.
    hardware_rim_mm: tuple[float, float] = (0.0, 3.0)
    hardware_rim_signal: tuple[float, float] = (0.6, 1.2)
    #: Probability that the field of view ends at or below the caudal-most
    #: annotated vertebra: the image is blank beyond an edge that lies
    #: ``caudal_cut_mm`` below that vertebra's centre, from a half-cut body to
    #: one whole with the next segment below partly in view. The shared sources
    #: span both regimes: MyoSegmenTUM ends 1-47 mm below the S1 centre (median
    #: 15), Zukic 79-116 mm (whole sacrum); a model trained on one of them must
    #: see the other (leave-one-source-out: the Zukic-only model seldom found S1
    #: on MyoSegmenTUM). Full-sacrum views stay the majority of crops.
    p_caudal_cut: float = 0.25
    #: A body is ~25-30 mm tall and the sacral segments below S1 shrink fast: -4 mm
    #: cuts through the upper half of the body; 45 mm leaves S1 whole and the upper
    #: S2 in view, where most clinical lumbar fields of view end.
    caudal_cut_mm: tuple[float, float] = (-4.0, 45.0)
    #: The edge runs across the source image's superior-inferior axis (a field of
    #: view is a rectangle in the scanner's frame, not one that follows the spine),
    #: tilted by up to this angle (deg) for stacks planned obliquely to the body.
    caudal_cut_tilt_deg: float = 15.0
    #: Probability that the image ends between two annotated vertebrae instead:
    #: below a random one and above the next, whose points leave the targets. A
    #: field of view that stops above the sacrum (L5 at the bottom edge, no S1)
    #: must not look like a cut S1 to the anchor head.
    p_gap_cut: float = 0.1
    #: Where that cut lies below the kept vertebra's centre, as a fraction of the
    #: distance to the next: from its lower endplate (bodies are ~0.6 spacings
    #: tall, so ~0.3) to just above the next body's upper endplate (~0.7).
    gap_cut_fraction: tuple[float, float] = (0.3, 0.65)
    #: Relative weights of the caudal gap cut's gaps nearest the caudal end,
    #: nearest first (every other gap weighs 1; empty: all equal). Clinical
    #: lumbar fields of view that miss the sacrum mostly end at L5/S1 or
    #: L4/L5, yet an equal draw over the ~5-8 annotated gaps ends the image
    #: there in about 1 crop in 60; e.g. (4.0, 2.0) makes the L5/S1 gap (S1
    #: annotated last) four times and L4/L5 twice as likely as any other.
    #: Empty by default (the shipped recipe); an experiment for issue 11.
    gap_cut_caudal_weights: tuple[float, ...] = ()
    #: The same at the cranial end: probability that the field of view starts
    #: ``cranial_cut_mm`` above the cranial-most annotated vertebra (edge across
    #: the image rows, tilted as the caudal one). Off by default; cervical
    #: training turns it on (``train.REGION_SAMPLER``): the real cervical
    #: sources start at the dens (the image top lies 25-35 mm above the C2
    #: body centre in all three shared subjects), clinical stacks anywhere from
    #: the posterior fossa down, so C2 must be known by its own shape (body and
    #: dens) and not by the skull above it.
    p_cranial_cut: float = 0.0
    #: Measured from the first annotated centre: on the real cervical subjects
    #: (annotated from C2) from 12 mm above the C2 body centre (the body whole,
    #: the base of the dens in view: the body is ~14 mm tall, the dens rises
    #: ~15 mm above it) to 45 mm (C1 and the foramen magnum in view); on
    #: phantoms annotated from C1 (13-18 mm above C2), the edge stays above C1.
    #: Cuts through the C2 body are never drawn: with the dens gone, a C2 at
    #: the edge would look like a C3 there yet be taught as the anchor.
    cranial_cut_mm: tuple[float, float] = (12.0, 45.0)
    #: Probability that the image starts between two annotated vertebrae
    #: instead (at ``gap_cut_fraction``, the cranial ones leave the targets): a
    #: C3 or lower body at the top edge must not look like the C2 anchor. A
    #: level without a body (C1) is never dropped alone: that cut would run
    #: through the dens of the C2 below it.
    p_cranial_gap_cut: float = 0.0
    #: Probability that the slab is tilted out of the sagittal plane and bent:
    #: clinical stacks are angled to follow the spine, patients lie rotated, and
    #: scoliotic spines leave the plane (partial volume of a body's side).
    p_oblique: float = 0.25
    #: Tilt of the slab about each in-plane axis, up to this angle (deg):
    #: planners angle sagittal stacks by up to ~15 deg.
    oblique_deg: float = 15.0
    #: Peak lateral deviation of a scoliotic bend across the crop (mm): a lumbar
    #: curve of 10-20 deg Cobb moves the apex body ~10-15 mm out of the plane.
    lateral_curve_mm: float = 12.0
    #: Wavelength range of that bend (mm): one curve over 5-9 vertebrae.
    lateral_curve_wavelength_mm: tuple[float, float] = (180.0, 320.0)
    #: Probability of a smooth random intensity remap (other contrasts) ...
    p_remap: float = 0.35
    #: ... and, of those, the share whose knots sit at quantiles of the crop's
    #: tissue intensities rather than at random intensities: every tissue class
    #: (fluid, disc, marrow, fat, muscle) gets a new brightness, in any order.
    #: T1 (dark discs, bright marrow), STIR and water-only Dixon (fat dark,
    #: fluid bright) are such reorderings of T2 tissue brightnesses.
    tissue_remap_share: float = 0.5
    #: Percentile range of the tissue knots over the crop's foreground.
    tissue_percentiles: tuple[float, float] = (20.0, 99.0)
    #: Inner knots of the remap's piecewise-linear curve: four tissue classes
    #: besides the background (fluid, disc, marrow, fat/muscle) get a new
    #: brightness each.
    remap_knots: int = 4
    #: Tissue knots need more than this many foreground pixels (a crop that is
    #: nearly all background gets random knots): a percentile of fewer pixels
    #: is one pixel's value, not a tissue's.
    tissue_remap_min_pixels: int = 16
    #: The background (0) maps to at most this: air stays dark in every contrast.
    remap_background_max: float = 0.2
    #: Foreground: normalised intensity above this (the image outside the field
    #: of view is 0 and would otherwise pull the quantiles down).
    foreground_threshold: float = 0.05
    #: Probability of a plain inversion when no remap was drawn.
    p_invert: float = 0.15
    #: Invert only where there is tissue and keep the air dark
    #: (``intensity.invert_tissue``): every real image has dark air, so a
    #: bright background would teach a shortcut for the other polarity. The
    #: weight of the inversion follows the crop smoothed by 1 px (2 mm, beyond
    #: the air's pixel noise) from 0 at 0.05 of the normalised range (air and the
    #: scanner's background lie below) to 1 at 0.15 (every soft tissue above).
    #: Off: in the cervical recipe it left the inverted and T1-like real necks
    #: refused (docs/NOTES.md, twenty-eighth session).
    invert_keeps_air_dark: bool = False
    air_smoothing_px: float = 1.0
    air_range: tuple[float, float] = (0.05, 0.15)
    #: Probability that a crop's contrast and texture come from a shallow
    #: network of random weights instead (``intensity.random_network_contrast``;
    #: Ouyang et al. 2023, single-source domain generalisation): edges stay,
    #: every tissue's brightness, polarity and fine texture change. Off by
    #: default, and then no random number is drawn. The other numbers are the
    #: paper's: four layers of two channels, kernels of 1 or 3 px, a leaky ReLU
    #: of slope 0.2, and half the crops blending two networks through a smooth
    #: mask of 4 x 4 control points (regions of ~2 vertebrae at 2 mm pixels).
    p_random_network: float = 0.0
    random_network_layers: int = 4
    random_network_channels: int = 2
    random_network_kernels: tuple[int, ...] = (1, 3)
    random_network_leak: float = 0.2
    random_network_blend: float = 0.5
    random_network_blend_grid: int = 4
    #: (level, weight) pairs: how much more often a crop is centred near that
    #: level than near any other annotated one (weight 1). Rare, hard levels
    #: (C1's ring, C2) get more of the training this way.
    centre_weights: tuple[tuple[str, float], ...] = ()
    #: Normalised intensities (1 = the 99.5th percentile, ``normalize_intensity``)
    #: are clipped here before the intensity augmentation: fat and fluid may
    #: exceed the percentile a little, a few bright artefacts by far.
    intensity_clip: float = 1.2
    #: Gamma range applied after the remap: scanners and windowing differ in
    #: how they map signal to grey levels (sqrt-like to square-like).
    gamma: tuple[float, float] = (0.6, 1.6)
    #: Probability of a smooth multiplicative bias field (surface-coil falloff,
    #: B1 inhomogeneity) ...
    p_bias_field: float = 0.7
    #: ... exp of a cubic zoom of a ``bias_field_grid`` x ``bias_field_grid``
    #: grid of N(0, sd) values, sd drawn from this range: up to ~x0.5-x2 across a
    #: crop, as from the centre of a spine coil array to its edge.
    bias_field_sd: tuple[float, float] = (0.1, 0.35)
    bias_field_grid: int = 3
    #: Probability and Gaussian sd range (px) of a blur: thick slices, partial
    #: volume and in-plane interpolation soften edges by up to about a pixel.
    p_blur: float = 0.4
    blur_sigma_px: tuple[float, float] = (0.3, 1.2)
    #: Probability and sd range of additive Gaussian noise (share of the
    #: normalised bright level): low-field and fast sequences reach ~8 %.
    p_noise: float = 0.7
    noise_sd: tuple[float, float] = (0.0, 0.08)
    #: Final linear gain and offset ranges: what is left of the percentile
    #: normalisation's spread between scans.
    gain: tuple[float, float] = (0.8, 1.25)
    offset: tuple[float, float] = (-0.1, 0.1)
    #: Negative samples (no vertebra): Gaussian noise of this mean and sd,
    #: smoothed by a Gaussian of sd drawn from ``negative_smoothing_px``: blobby
    #: texture at the scale of bowel, muscle and fat, where the detector must
    #: stay silent.
    negative_mean: float = 0.4
    negative_sd: float = 0.3
    negative_smoothing_px: tuple[float, float] = (1.0, 6.0)
    #: Beyond the first and last annotated vertebra the loss is masked from this
    #: share of the spacing to the next annotated one on: the next (unlabeled)
    #: body's edge lies ~0.6 spacings away (bodies are ~0.6 spacings tall, so
    #: their edges start at ~0.7 of the way), minus a margin for the heatmap width.
    validity_band_start: float = 0.55
    #: The level map is a target only where a vertebra's lateral profile is
    #: above this (``lateral_profile``): near a body's side its level is still
    #: clear, while far out of its slab the pixel shows another structure.
    level_min_amplitude: float = 0.3
    #: Level spacing (mm) assumed for a scan with a single annotated point
    #: (a typical lumbar spacing; it only scales that point's plateau).
    default_spacing_mm: float = 30.0
