"""Spine labels from DICOM structured reports (SR): their spatial coordinates and the names next to them.

Every SCOORD (image pixel coordinates, with the image it is SELECTED FROM)
and SCOORD3D (patient LPS mm in a frame of reference) of an SR is named from
nearby content: its parent TEXT/CODE item, else the Tracking Identifier,
Finding Site or other TEXT/CODE items of its container (a measurement group).
A container holding one SCOORD and one SCOORD3D (what
:func:`spinelabel.io.dicom_label_write.write_sr` writes) is one point: the
exact 3D position, on the series of the 2D reference. Called by
:func:`spinelabel.io.dicom_label_read.import_dicom_annotations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import anatomy
from .dicom_label_common import snomed_levels
from .dicom_label_index import Found, ImageIndex, check_on_image, floats, image_refs, single_image
from .dicom_label_marks import Skip, level_of_text, shape_centre, try_level

__all__ = ["device_observed", "read_sr"]

# SR concept names (scheme, code value) that carry a label.
_TRACKING_ID = ("DCM", "112039")
_FINDING_SITE = {("SCT", "363698007"), ("SRT", "G-C0E3")}
_SHORT_LABEL = ("DCM", "125309")
#: SR observer type (TID 1002): concept name, and the codes of a person and a device observer.
_OBSERVER_TYPE, _PERSON, _DEVICE = ("DCM", "121005"), ("DCM", "121006"), ("DCM", "121007")


def _concept(item: Any, keyword: str = "ConceptNameCodeSequence") -> tuple[str, str, str] | None:
    """(scheme, value, meaning) of a code sequence's first item, or None."""
    seq = item.get(keyword)
    if not seq:
        return None
    code = seq[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue") or ""
    return str(code.get("CodingSchemeDesignator", "") or ""), str(value), str(code.get("CodeMeaning", "") or "")


def _value_texts(item: Any, snomed: dict[tuple[str, str], str]) -> list[str]:
    """Label candidates held by a TEXT or CODE item's value (a SNOMED vertebra code -> its level)."""
    vtype = str(item.get("ValueType", "") or "")
    if vtype == "TEXT":
        return [str(item.get("TextValue", "") or "")]
    if vtype == "CODE":
        code = _concept(item, "ConceptCodeSequence")
        if code is None:
            return []
        return [snomed[code[:2]]] if code[:2] in snomed else [code[2]]
    return []


def _children(item: Any) -> list[Any]:
    return list(item.get("ContentSequence", []) or [])


def _is_container(item: Any) -> bool:
    return "ValueType" not in item or str(item.ValueType) == "CONTAINER"  # the document root has no ValueType


def _coordinate_items(root: Any) -> Iterator[tuple[Any, list[Any]]]:
    """Every SCOORD/SCOORD3D item with its ancestors (root first), depth first."""
    stack: list[tuple[Any, list[Any]]] = [(root, [])]
    while stack:
        item, ancestors = stack.pop()
        kids = _children(item)
        for child in reversed(kids):
            if str(child.get("ValueType", "")) in ("SCOORD", "SCOORD3D"):
                continue
            stack.append((child, ancestors + [item]))
        for child in kids:
            if str(child.get("ValueType", "")) in ("SCOORD", "SCOORD3D"):
                yield child, ancestors + [item]


def _container_levels(container: Any, snomed: dict[tuple[str, str], str]) -> tuple[set[str], list[str]]:
    """Levels named by a container's label items: strong ones (tracking id, finding site, short label) first.

    Returns the set of levels and the label texts that name no vertebra.
    """
    strong: set[Any] = set()
    weak: set[Any] = set()
    bad: list[Any] = []
    for child in _children(container):
        concept = _concept(child)
        key = concept[:2] if concept else None
        is_strong = key == _TRACKING_ID or key in _FINDING_SITE or key == _SHORT_LABEL
        for text in _value_texts(child, snomed):
            try:
                (strong if is_strong else weak).add(level_of_text(text))
            except Skip as exc:
                if is_strong:
                    bad.append(str(exc))
    return (strong or weak), bad


def _sr_label(coord: Any, ancestors: list[Any], snomed: dict[tuple[str, str], str]) -> str:
    """The level naming a coordinate item (see the module docstring); Skip otherwise."""
    own = _concept(coord)
    if own and (level := try_level(own[2])):
        return level
    bad: list[str] = []
    for item in reversed(ancestors):
        if not _is_container(item):
            for text in _value_texts(item, snomed):
                try:
                    return level_of_text(text)
                except Skip as exc:
                    bad.append(str(exc))
            continue
        levels, bad_here = _container_levels(item, snomed)
        if len(levels) == 1:
            return next(iter(levels))
        if len(levels) > 1:
            raise Skip(f"several vertebra names next to it ({', '.join(sorted(levels, key=anatomy.ordinal))})")
        name = _concept(item)
        if name and (level := try_level(name[2])):
            return level
        bad.extend(bad_here)
        break
    raise Skip(bad[0] if bad else "no vertebra name next to it")


def _image_reference(coord: Any) -> tuple[str, int | None]:
    """The (SOPInstanceUID, frame) a SCOORD is SELECTED FROM; Skip when missing."""
    for child in _children(coord):
        if str(child.get("ValueType", "")) == "IMAGE" and child.get("ReferencedSOPSequence"):
            ref = child.ReferencedSOPSequence[0]
            return single_image(image_refs([ref]), "SCOORD")
    raise Skip("SCOORD without a referenced image")


def _graphic_points(coord: Any, dims: int) -> np.ndarray:
    return floats(coord.get("GraphicData"), dims, str(coord.get("ValueType", "")))


def _evidence_series(ds: Any) -> set[str]:
    """SeriesInstanceUIDs listed in the SR's evidence sequences."""
    out = set()
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []) or []:
            for series in study.get("ReferencedSeriesSequence", []) or []:
                out.add(str(series.get("SeriesInstanceUID", "")))
    return out


def _series_for_frame_of_reference(for_uid: str, ds: Any, index: ImageIndex) -> str:
    """The one sagittal series in ``for_uid`` (preferring those the SR lists as evidence)."""
    candidates = []
    for series in index.series_images:
        plane = index.first_plane(series)
        if index.frame_of_reference(series) == for_uid and plane is not None and plane.is_sagittal:
            candidates.append(series)
    evidence = _evidence_series(ds)
    preferred = [s for s in candidates if s in evidence] or candidates
    if len(preferred) == 1:
        return preferred[0]
    if not preferred:
        raise Skip(f"no sagittal series of frame of reference {for_uid} among the inputs")
    raise Skip(f"{len(preferred)} sagittal series share frame of reference {for_uid}; cannot tell which one is labelled")


def read_sr(path: Path, ds: Any, index: ImageIndex, problems: list[str]) -> list[Found]:
    """Named points of a structured report (see the module docstring)."""
    coords = list(_coordinate_items(ds))
    if not coords:
        problems.append(f"{path}: SR without spatial coordinates (SCOORD/SCOORD3D): nothing to import")
        return []
    snomed = snomed_levels()
    by_container: dict[int, list[tuple[int, Any, list[Any]]]] = {}
    for n, (coord, ancestors) in enumerate(coords, start=1):
        by_container.setdefault(id(ancestors[-1]), []).append((n, coord, ancestors))
    found = []
    for members in by_container.values():
        kinds = sorted(str(coord.ValueType) for _, coord, _ in members)
        # a SCOORD with a SCOORD3D in one container is one point (what write_sr writes)
        groups = [members] if kinds == ["SCOORD", "SCOORD3D"] else [[m] for m in members]
        for group in groups:
            where = f"{path}: {'+'.join(str(c.ValueType) for _, c, _ in group)} #{group[0][0]}"
            try:
                found.append(_sr_point(path, ds, [(c, a) for _, c, a in group], index, snomed))
            except Skip as exc:
                problems.append(f"{where}: {exc} (skipped)")
    return found


def _sr_point(path: Path, ds: Any, group: list[tuple[Any, list[Any]]], index: ImageIndex,
              snomed: dict[tuple[str, str], str]) -> Found:
    """One named point from a SCOORD, a SCOORD3D, or a SCOORD + SCOORD3D pair."""
    coord, ancestors = group[-1]
    label = _sr_label(coord, ancestors, snomed)
    flat = {str(c.ValueType): c for c, _ in group}
    series, lps = None, None
    if "SCOORD" in flat:
        uid, frame = _image_reference(flat["SCOORD"])
        plane = index.plane(uid, frame)
        series = index.images[uid].series_uid
        points = _graphic_points(flat["SCOORD"], 2)
        centre = shape_centre(str(flat["SCOORD"].get("GraphicType", "")), points, plane.spacing, "SCOORD")
        check_on_image(centre, plane)
        lps = plane.to_lps(centre)[0]
    if "SCOORD3D" in flat:
        item = flat["SCOORD3D"]
        for_uid = str(item.get("ReferencedFrameOfReferenceUID", "") or "")
        if series is None:
            series = _series_for_frame_of_reference(for_uid, ds, index)
        elif for_uid != index.frame_of_reference(series):
            raise Skip(f"its SCOORD3D is in frame of reference {for_uid}, not that of its image")
        lps = shape_centre(str(item.get("GraphicType", "")), _graphic_points(item, 3), None, "SCOORD3D")
    if series is None or lps is None:
        raise Skip("no usable coordinates")
    return Found(series, label, np.asarray(lps, float), path)


def device_observed(ds: Any) -> bool:
    """Whether an SR names only a device as its observer (TID 1002): an algorithm's labels, not a person's."""
    observers = set()
    for item in ds.get("ContentSequence", []) or []:
        if (name := _concept(item)) is not None and name[:2] == _OBSERVER_TYPE:
            value = _concept(item, "ConceptCodeSequence")
            observers.add(value[:2] if value else None)
    return _DEVICE in observers and _PERSON not in observers
