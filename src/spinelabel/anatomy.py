"""Vertebral levels, their order, numbering and normal variants.

Numbering follows VerSe: C1..C7 = 1..7, T1..T12 = 8..19, L1..L5 = 20..24,
L6 = 25, S1 = 26, T13 = 28.

Typical sizes below are rounded population means used only as *priors* where
no training data exist (the lumbar pairs are learned from annotations):

- vertebral body heights: Panjabi MM et al., "Cervical human vertebrae:
  quantitative three-dimensional anatomy of the middle and lower regions",
  Spine 16:861-869 (1991); "Thoracic human vertebrae: quantitative
  three-dimensional anatomy", Spine 16:888-901 (1991); "Human lumbar
  vertebrae: quantitative three-dimensional anatomy", Spine 17:299-306 (1992).
- disc heights: Frobin W et al., "Height of lumbar discs measured from
  radiographs compared with degeneration and height classified from MR
  images", Eur Radiol 11:263-269 (2001); cervical and thoracic discs from
  Gilad I, Nissan M, "A study of vertebra and disc geometric relations of the
  human cervical and lumbar spine", Spine 11:154-157 (1986) (rounded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CERVICAL = tuple(f"C{i}" for i in range(1, 8))
THORACIC = tuple(f"T{i}" for i in range(1, 13))
LUMBAR = tuple(f"L{i}" for i in range(1, 6))
SACRAL = ("S1",)

#: The standard chain of levels, cranial to caudal.
STANDARD_LEVELS: tuple[str, ...] = CERVICAL + THORACIC + LUMBAR + SACRAL

#: Transitional (supernumerary) levels and the level they follow.
VARIANT_AFTER: dict[str, str] = {"T13": "T12", "L6": "L5"}

VERSE_ID: dict[str, int] = {name: i + 1 for i, name in enumerate(CERVICAL + THORACIC + LUMBAR)}
VERSE_ID.update({"L6": 25, "S1": 26, "T13": 28})
VERSE_NAME: dict[int, str] = {v: k for k, v in VERSE_ID.items()}

ALL_LEVELS: tuple[str, ...] = tuple(VERSE_ID)


def chain(variants: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The cranio-caudal chain of levels, with transitional levels inserted.

    >>> chain(("L6",))[-3:]
    ('L5', 'L6', 'S1')
    """
    levels = list(STANDARD_LEVELS)
    for v in variants:
        levels.insert(levels.index(VARIANT_AFTER[v]) + 1, v)
    return tuple(levels)


def ordinal(level: str) -> float:
    """A number that increases cranio-caudally; variants fall between neighbours.

    Standard levels get 1..25 (C1=1, S1=25); T13 = 19.5, L6 = 24.5.
    """
    if level in VARIANT_AFTER:
        return ordinal(VARIANT_AFTER[level]) + 0.5
    return float(STANDARD_LEVELS.index(level) + 1)


#: Levels recognisable by their own shape, whatever the field of view: C2 (the
#: tallest cervical body, with the dens) and S1 (the top of the sacrum). A
#: detected anchor fixes the count of a chain, as the paper's clinicians do.
ANCHOR_LEVELS: tuple[str, ...] = ("C2", "S1")

#: Levels without a vertebral body: C1 is a ring (anterior arch, lateral
#: masses) around the dens, so a detector of body centres finds it less often.
BODILESS_LEVELS: tuple[str, ...] = ("C1",)


@dataclass(frozen=True)
class Region:
    """A field of view the software labels, and the levels it may contain."""

    name: str
    levels: tuple[str, ...]
    #: Levels that anchor the chain by their distinctive shape.
    anchors: tuple[str, ...]
    #: Transitional variants considered for this region.
    variants: tuple[str, ...]


REGIONS: dict[str, Region] = {
    "lumbar": Region("lumbar", chain()[chain().index("T6") :], ("S1",), ("L6", "T13")),
    "cervical": Region("cervical", chain()[: chain().index("T6") + 1], ("C2",), ()),
    "whole": Region("whole", chain(), ("C2", "S1"), ("L6", "T13")),
}

#: Levels that only a cervical field of view shows (the lumbar region ends at T6).
_CERVICAL_ONLY = frozenset(REGIONS["cervical"].levels) - frozenset(REGIONS["lumbar"].levels)
_LUMBAR_ONLY = frozenset(REGIONS["lumbar"].levels) - frozenset(REGIONS["cervical"].levels)


def region_for_levels(levels: list[str]) -> str:
    """The region whose field of view fits a set of (whole-chain) labels.

    Cervical-only levels (C1-T5) and lumbar-only levels (T7-S1, L6, T13)
    together mean a whole-spine scan; otherwise the side that has labels wins,
    and a scan showing only T6 counts as lumbar (the default region).

    >>> region_for_levels(["C2", "C3", "C4"]), region_for_levels(["T12", "L1"]), region_for_levels(["C7", "L1"])
    ('cervical', 'lumbar', 'whole')
    """
    cervical = any(lv in _CERVICAL_ONLY for lv in levels)
    lumbar = any(lv in _LUMBAR_ONLY for lv in levels)
    if cervical and lumbar:
        return "whole"
    return "cervical" if cervical else "lumbar"


# Typical vertebral body height (mm, superior-inferior, at the centre) per level.
BODY_HEIGHT_MM: dict[str, float] = {
    "C1": 10.0, "C2": 22.0, "C3": 14.0, "C4": 14.0, "C5": 14.0, "C6": 14.0, "C7": 15.0,
    "T1": 16.0, "T2": 17.0, "T3": 17.5, "T4": 18.0, "T5": 18.5, "T6": 19.0, "T7": 19.5,
    "T8": 20.0, "T9": 21.0, "T10": 22.0, "T11": 23.0, "T12": 24.0, "T13": 24.5,
    "L1": 25.0, "L2": 26.0, "L3": 27.0, "L4": 27.0, "L5": 27.0, "L6": 27.0, "S1": 30.0,
}
# Typical disc height (mm) below each level.
DISC_BELOW_MM: dict[str, float] = {
    **{c: 5.0 for c in CERVICAL}, "C1": 0.0,
    **{t: 5.0 for t in THORACIC[:9]}, "T10": 6.0, "T11": 7.0, "T12": 8.0, "T13": 8.0,
    "L1": 9.0, "L2": 10.0, "L3": 11.0, "L4": 11.0, "L5": 10.0, "L6": 10.0,
}


def typical_spacing_mm(upper: str, lower: str) -> float:
    """Prior centroid-to-centroid distance between two adjacent levels (mm)."""
    return BODY_HEIGHT_MM[upper] / 2 + DISC_BELOW_MM[upper] + BODY_HEIGHT_MM[lower] / 2


#: A level's region letter as clinicians write it: C, T, L, S, and for thoracic also "Th" (German-speaking
#: countries). Not "D" (dorsal, D12 in Italy, Spain, France): viewers name distance measurements "D1", "D2",
#: and a measurement read as T1 would be a wrong label in the training data.
_REGION = r"(C|TH?|L|S)"
_REGION_NAME = {"C": "C", "T": "T", "TH": "T", "L": "L", "S": "S"}
_LABEL_RE = re.compile(rf"^\s*{_REGION}\s*-?\s*(\d{{1,2}})\b", re.IGNORECASE)
#: A disc or a range ("L4-L5", "L4/5", "L4-5", "C5 - C6"), which names no single vertebra.
_DISC_RE = re.compile(rf"^\s*{_REGION}\s*-?\s*\d{{1,2}}\s*[-/]\s*{_REGION}?\s*\d", re.IGNORECASE)
#: A further level named after the first ("L1\\L2", "L2 L3", "L2,L3"): the text names two vertebrae, not one.
_ANOTHER_LEVEL_RE = re.compile(rf"(?<![A-Za-z]){_REGION}\s*-?\s*\d{{1,2}}\b", re.IGNORECASE)
#: A number right after the level, joined by nothing but a space or by a connector: L4-5 written with an en dash
#: (U+2013, what word processors put in), a minus sign (U+2212) or another dash, "L4\\5", "L4,5", "L4+5",
#: "L4 to 5", "L4.5", or "T1 2" typed for T12. A disc, a range or a typo, never one vertebra: reading the first
#: number alone would name the wrong one.
_FURTHER_NUMBER_RE = re.compile(
    r"\s*(?:[-\u2010\u2011\u2012\u2013\u2014\u2212/\\,.+&]|to\b|and\b)?\s*\d(?!\d*\s*(?:st|nd|rd|th)\b)", re.IGNORECASE
)  # an ordinal ("S1 2nd", "L3, 2nd reader") is a note, not a level
#: Words after the level that name another structure than the vertebral body ("L4 disc", "L3 canal", "L2 spinous
#: process", "S1 foramen", "L3 lesion", "L3 psoas"): the point marks that structure, not the body centre a label
#: must give. Not "anterior"/"posterior" or "mass" alone: "L1 anterior wedge" is a body, and C1's point is put on its
#: anterior arch or lateral masses (docs/cervical.md).
_OTHER_STRUCTURE_RE = re.compile(
    r"\b(?:dis[ck]s?|interspace|canal|spinous|process|pedicles?|end-?plates?|foram(?:en|ina)|nerves?|roots?|facets?|"
    r"laminae?|transverse|cord|conus|dural?|annulus|nucleus|hernia\w*|protru\w*|extru\w*|bulg\w*|stenos\w*|"
    r"lesions?|cysts?|tumou?rs?|metasta\w*|elements?|pars|psoas|aorta|cava|kidneys?|muscles?)\b",
    re.IGNORECASE,
)
#: An MR signal or sequence note: "T2 hyperintense", "T1 hypo", "T2*", "T2 FS", "T1 post gad", "T2 sag", "T1 TSE"
#: name a contrast or a series, not a vertebra (clinical notes such as "post-op" or "fatty" are left readable).
_SIGNAL_RE = re.compile(
    r"^\s*\*|\b(?:hyper-?intens\w*|hypo-?intens\w*|iso-?intens\w*|hyper|hypo|intens\w*|signal|weighted|flair|stir|"
    r"tirm|fs|fat-?sat\w*|gad\w*|contrast|enhanc\w*|sag|sagittal|ax|axial|cor|coronal|tse|fse|gre|se|dixon)\b"
    r"|\bpost(?:[- ]?(?:gad\w*|contrast\w*))?\s*$",
    re.IGNORECASE,
)
#: A measurement named after a level ("L1: 23.4 mm", "L1 = 13.2", "L3 height 22 mm", "S1 245 mm2", "L3 ROI mean
#: 245", "L1 angle 12"): a viewer's measurement tool names its lines so, and the line does not mark the body centre.
_MEASUREMENT_RE = re.compile(
    r"^\s*[:=]\s*[-+]?\d|\d\s*(?:mm|cm|ms|deg|%|\u00b0)|\b(?:mean|sd|std|roi|angle|adc|area|volume|diameter|"
    r"height|width|length|distance)\b",
    re.IGNORECASE,
)


def reason(exc: ValueError, text: str) -> str:
    """The reason :func:`parse_level` gave for refusing ``text``, without the text it ends with."""
    return str(exc).removesuffix(f": {text!r}")


def parse_level(text: str) -> str:
    """Normalise a clinician's label text ("l3", "L 3", "L3 vertebra", "Th12") to a level name.

    Raises
    ------
    ValueError
        If the text names no known level.
    """
    if _DISC_RE.match(str(text)):
        raise ValueError(f"names a disc or a range, not a vertebra: {text!r}")
    m = _LABEL_RE.match(str(text))
    if not m:
        raise ValueError(f"not a vertebra label: {text!r}")
    if _ANOTHER_LEVEL_RE.search(str(text), m.end()):
        raise ValueError(f"names more than one level, not one vertebra: {text!r}")
    if _FURTHER_NUMBER_RE.match(str(text), m.end()):
        raise ValueError(f"a second number after the level (a disc, a range or a typo?), not one vertebra: {text!r}")
    rest = str(text)[m.end():]
    if "?" in str(text):
        raise ValueError(f"marked uncertain ('?'), not a label to train on: {text!r}")
    if _MEASUREMENT_RE.search(rest):
        raise ValueError(f"a measurement named after the level, not a vertebra's centre: {text!r}")
    if _SIGNAL_RE.search(rest):
        raise ValueError(f"an MR signal or contrast note, not a vertebra label: {text!r}")
    if _OTHER_STRUCTURE_RE.search(rest):
        raise ValueError(f"names another structure than the vertebral body: {text!r}")
    name = f"{_REGION_NAME[m.group(1).upper()]}{int(m.group(2))}"
    if name not in VERSE_ID:
        raise ValueError(f"unknown vertebra level: {text!r}")
    return name
