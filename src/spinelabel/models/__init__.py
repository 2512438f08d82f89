"""Shipped and user-trained models: weights plus a small JSON config.

A model directory holds ``config.json`` (frame, levels, detection settings,
the learned shape model, the weights' SHA-256) and ``weights.pt`` (a float16
state dict). :func:`load_model` refuses weights whose checksum differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ModelError, OutputError, one_line
from ..jsonfile import parse_json

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.pt"


@dataclass(frozen=True)
class DetectionSettings:
    """How heatmaps become candidates."""

    #: Heat at which a peak becomes a candidate (chosen, not tuned): low, so
    #: that doubtful peaks reach the chain model, which prices leaving one out
    #: (``LabelingParams.false_positive_weight``) against a missed level; a
    #: spurious candidate costs a little, a missed vertebra may cost a level.
    threshold: float = 0.25
    #: Size (mm) of the in-plane window of a local maximum: a body's heat
    #: plateau gives one peak, and lumbar centres 32-40 mm apart never share a
    #: window (regions with closer vertebrae set their own, ``REGION_DETECTION``).
    inplane_nms_mm: float = 9.0
    #: Size (mm) across the slices of that window, and the lateral distance
    #: within which two peaks may be one body: a lumbar body is 40-50 mm wide
    #: and its plateau spans most of it.
    lateral_nms_mm: float = 30.0
    #: Peaks closer than this in the sagittal plane (and ``lateral_nms_mm``
    #: across) are one vertebra: about a third of a lumbar step, well inside
    #: one body (~25-30 mm tall).
    merge_inplane_mm: float = 12.0
    #: Vertebrae needed to report a result: two define a step, the least a
    #: chain can be judged by.
    min_candidates: int = 2
    #: Labels with confidence >= 0.5 needed to report a result; fewer means "nothing found".
    min_confident: int = 2
    #: At least this share of the strong candidates (score >= 0.5) along the
    #: labeled chain's length (``pipeline.within_chain_span``) must be its
    #: vertebrae, or the image is "not a spine this model knows". On the 39
    #: lumbar training scans the share of all strong candidates was never below
    #: 0.5 (the rest are lateral duplicates); on uniform noise the v3 lumbar
    #: model gave 40 strong candidates and a 4-vertebra chain (0.1). Counting
    #: only those along the chain (tenth session) spares partial chains: the real
    #: cervical errsm20, C2-C7 right, had 6 of 29 strong detections in the
    #: chain, most of the rest below C7 (6 of 15 along it).
    min_explained_fraction: float = 0.25
    #: Also propose the heat-weighted centre of each one-level part of a blob
    #: whose level estimate spans several levels. Where adjacent centres lie
    #: closer than the heatmap's width (C1 sits 13-18 mm above C2, behind the
    #: dens, and has no body of its own) their responses fuse into one ridge
    #: with a single maximum, but the level map still splits it.
    split_levels: bool = False
    #: Smallest one-level part (mm^3) proposed by ``split_levels``: smaller
    #: parts are rounding flicker at a blob's rim.
    split_min_volume_mm3: float = 200.0
    #: In-plane turns (deg) of the slices near the labeled chain's caudal end
    #: under which the network looks again for vertebrae the chain could
    #: continue with (``detection.candidates_beyond``; empty: never). The
    #: network reads a level partly from the angle of the spine in the image and
    #: misses bodies tilted beyond the angles it was trained on: the real
    #: cervical errsm20's T1-T3, whose steps tilt 42-45 deg (17-21 deg in the
    #: other subjects), are found on slices turned 20 deg back (docs/NOTES.md,
    #: fifteenth and sixteenth sessions). Both signs, since a junction may turn
    #: either way from the training angles.
    caudal_turns_deg: tuple[float, ...] = ()
    #: Where the chain skips a level between two named vertebrae, also propose
    #: the body between each two candidates in that gap that lie closer than
    #: this (mm) and further apart than ``merge_inplane_mm``
    #: (``detection.split_bodies``), and name again (``Labeler.detect_and_name``);
    #: None: never. A body whose heat an artefact splits in two gives two
    #: peaks near its endplates, neither at its centre, and the chain skips
    #: its level. A lumbar model sets it below the shortest step between two
    #: neighbours T11-L5 of the 67 shared lumbar scans (27.8 mm, an L4-L5, so
    #: 26); only a gap is searched, since a small spine's real neighbours may
    #: lie that close, and the body may only fill the gap, its own name
    #: flagged (``labeling_warnings.gap_filled``). Measured (docs/NOTES.md,
    #: forty-eighth and forty-ninth sessions): it names the screw-split L5 of
    #: 4 more of the 28 held-out scans under severe metal artefacts and
    #: changes nothing else in the held-out, upside-down, robustness, field-of-
    #: view, cervical and leave-one-source-out runs; taken without the
    #: ``gap_filled`` rule it completed a chain wrong by a level (zukic-19),
    #: whose names rose from 0.30-0.40 to 0.52-0.53.
    split_body_max_mm: float | None = None

    def __post_init__(self) -> None:
        if not all(-90.0 < float(a) < 90.0 for a in self.caudal_turns_deg):  # NaN fails too
            raise ValueError(f"caudal_turns_deg must be angles strictly between -90 and 90 deg, not {self.caudal_turns_deg!r}")
        _check_within("detection.threshold", self.threshold, 0.0, 1.0)
        for name in ("inplane_nms_mm", "lateral_nms_mm", "merge_inplane_mm", "split_min_volume_mm3"):
            _check_within(f"detection.{name}", getattr(self, name), 0.0, math.inf)
        if self.split_body_max_mm is not None:
            _check_within("detection.split_body_max_mm", self.split_body_max_mm, 0.0, math.inf)
        _check_within("detection.min_explained_fraction", self.min_explained_fraction, 0.0, 1.0)
        for name in ("min_candidates", "min_confident"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"detection.{name} must be a whole number >= 0, not {getattr(self, name)!r}")


#: The pixel and slice spacings (mm) a model may ask the image to be resampled to: a 2D U-Net on vertebrae
#: needs pixels well under a body's height (25 mm) and an input of a sensible size (0 would be infinitely many).
MODEL_SPACING_MM = (0.1, 20.0)


def _check_within(name: str, value: Any, low: float, high: float) -> None:
    """ValueError unless ``value`` is a finite number with ``low < value <= high`` (NaN, infinity, text and
    booleans fail; JSON as Python reads it may hold NaN and Infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low < value <= high:
        bounds = "".join((f" above {low:g}" if math.isfinite(low) else "", f" and at most {high:g}" if math.isfinite(high) else ""))
        raise ValueError(f"{name} must be a finite number{bounds}, not {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: str
    region: str
    axcodes: tuple[str, str, str]
    inplane_spacing_mm: float
    slice_step_mm: float
    intensity_percentiles: tuple[float, float]
    channels: tuple[int, ...]
    level_offset: float
    level_sd: float
    detection: DetectionSettings
    shape_model: dict[str, Any]
    sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    #: 2 = heatmap + level; 3 adds the anchor heatmap (C2/S1).
    out_channels: int = 2
    #: Overrides of ``labeling.LabelingParams`` for this model (JSON lists for tuples).
    labeling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("inplane_spacing_mm", "slice_step_mm"):
            _check_within(name, getattr(self, name), *MODEL_SPACING_MM)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.intensity_percentiles)
        if len(self.intensity_percentiles) != 2 or not numbers or not 0.0 <= self.intensity_percentiles[0] < self.intensity_percentiles[1] <= 100.0:
            raise ValueError(f"intensity_percentiles must be two percentiles, 0 <= low < high <= 100, not {self.intensity_percentiles!r}")
        _check_within("level_sd", self.level_sd, 0.0, math.inf)
        _check_within("level_offset", self.level_offset, -math.inf, math.inf)
        if not self.channels or not all(isinstance(c, int) and c > 0 for c in self.channels):
            raise ValueError(f"channels must be whole numbers above 0, not {self.channels!r}")
        if self.out_channels not in (2, 3):
            raise ValueError(f"out_channels must be 2 or 3, not {self.out_channels!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        d["axcodes"] = tuple(d["axcodes"])
        d["intensity_percentiles"] = tuple(d["intensity_percentiles"])
        d["channels"] = tuple(d["channels"])
        detection = dict(d["detection"])
        if "caudal_turns_deg" in detection:
            detection["caudal_turns_deg"] = tuple(float(a) for a in detection["caudal_turns_deg"])
        d["detection"] = DetectionSettings(**detection)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_dir(region_or_path: str | Path) -> Path:
    """A shipped model by region name ('lumbar'), or a directory path."""
    p = Path(region_or_path)
    if (p / CONFIG_NAME).is_file():
        return p
    shipped = PACKAGE_DIR / str(region_or_path)
    if (shipped / CONFIG_NAME).is_file():
        return shipped
    raise ModelError(f"no model found for {str(region_or_path)!r} (neither a shipped region nor a model directory)")


def is_model_dir(folder: Path) -> bool:
    """Whether ``folder`` holds a spinelabel model (a config.json that reads as a model config)."""
    if not (Path(folder) / CONFIG_NAME).is_file():
        return False
    try:
        read_config(Path(folder))
    except ModelError:
        return False
    return True


def read_config(model_dir: Path) -> ModelConfig:
    """The config of a model directory; ModelError (one line) when it is not valid JSON of the right shape."""
    try:
        return ModelConfig.from_dict(parse_json((model_dir / CONFIG_NAME).read_text()))
    except KeyError as exc:
        raise ModelError(f"model config {model_dir / CONFIG_NAME} lacks the field {exc.args[0]!r}") from None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"model config {model_dir / CONFIG_NAME} is unreadable: {one_line(exc)}") from None


def load_model(region_or_path: str | Path):
    """Load (config, network in eval mode) after verifying the weights' checksum."""
    import torch

    from .network import UNet2D

    model_dir = resolve_model_dir(region_or_path)
    config = read_config(model_dir)
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"model weights missing: {weights}")
    digest = sha256_of(weights)
    if config.sha256 and digest != config.sha256:
        raise ModelError(f"model weights {weights} are corrupt (SHA-256 {digest[:12]}… does not match the config)")
    try:
        net = UNet2D(channels=config.channels, out_channels=config.out_channels)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except Exception as exc:  # torch raises many types for garbage files and mismatched shapes
        raise ModelError(f"model {model_dir} cannot be loaded (corrupt weights or config?): {one_line(exc)}") from None
    net.eval()
    if not config.sha256:  # a config written by hand: results still name the weights that made them
        config = replace(config, sha256=digest)
    return config, net


def save_model(model_dir: Path, config: ModelConfig, net) -> Path:
    """Write float16 weights and the config (with the weights' checksum), both or neither.

    Raises
    ------
    OutputError
        The folder cannot be created or written (read-only, a file in the way,
        the disk full); an earlier model there is left as it was.
    """
    import io

    import torch

    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    weights = buf.getvalue()
    d = config.to_dict()
    d["sha256"] = hashlib.sha256(weights).hexdigest()
    _write_together(Path(model_dir), {WEIGHTS_NAME: weights, CONFIG_NAME: json.dumps(d, indent=1).encode()})
    return Path(model_dir)


def _write_together(folder: Path, files: dict[str, bytes]) -> None:
    """Write the files into ``folder``, all of them or none.

    Each file is written under a temporary name first; an earlier file of the
    same name is kept as a hard link (a copy where links are refused), and the
    temporary files are then renamed over the names one by one. When a rename
    fails, the ones already made are rolled back: ``folder`` holds the earlier
    files again (or none, where there were none), never a new file beside an
    old one.

    Raises
    ------
    OutputError
        The folder cannot be created or written; one line. Should the roll
        back fail too, the line names the kept copies of the earlier files.
    """
    import os

    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmps = {name: folder / f".{name}.{tag}.tmp" for name in files}
    olds = {name: folder / f".{name}.{tag}.old" for name in files}
    renamed: list[str] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, payload in files.items():
            tmps[name].write_bytes(payload)
        for name in files:
            _keep_copy(folder / name, olds[name])
        for name in files:
            os.replace(tmps[name], folder / name)
            renamed.append(name)
    except BaseException as exc:
        failure = _roll_back(folder, renamed, olds)
        kept = [olds[n] for n in renamed if olds[n].exists()] if failure else []
        olds = {n: p for n, p in olds.items() if p not in kept}  # the only copies of the earlier files: not removed
        if not isinstance(exc, OSError):
            raise
        raise OutputError(_failure_line(folder, exc, failure, kept)) from None
    finally:
        for path in [*tmps.values(), *olds.values()]:
            _remove_quietly(path)


def _failure_line(folder: Path, exc: OSError, failure: str | None, kept: list[Path]) -> str:
    """The one-line reason of a failed model write (and of a failed roll back, naming the earlier files' copies)."""
    line = f"cannot write the model to {folder}: {exc.strerror or exc}"
    if failure is None:
        return line
    line += f"; the earlier model could not be put back ({failure})"
    return line + (f", its files are kept as {', '.join(map(str, kept))}" if kept else "")


def _keep_copy(path: Path, copy: Path) -> None:
    """Keep the contents of ``path`` (when it is a file) as ``copy``: a hard link, else a copy."""
    import os
    import shutil

    if not path.is_file():
        return
    try:
        os.link(path, copy)
    except OSError:
        shutil.copy2(path, copy)


def _roll_back(folder: Path, renamed: list[str], olds: dict[str, Path]) -> str | None:
    """Undo the renames of ``renamed``: put each earlier file back, or remove the new one where there was none.

    Returns
    -------
    str or None
        Why the roll back failed; None when ``folder`` is as it was.
    """
    import os

    try:
        for name in reversed(renamed):
            if olds[name].is_file():
                os.replace(olds[name], folder / name)
            else:
                (folder / name).unlink(missing_ok=True)
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def _remove_quietly(path: Path) -> None:
    """Remove a leftover temporary file; one that cannot be removed stays (the error at hand matters more)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
