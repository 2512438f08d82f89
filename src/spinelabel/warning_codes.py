"""Warnings as a code a program routes by and a sentence a person reads.

Every warning that comes with a result (the DICOM reader's and the
labeler's) is a :class:`LabelWarning`: a stable code from :data:`CODES` and
the plain-English text. The JSON result keeps the texts in ``warnings`` and
the codes, in the same order, in ``warning_codes`` (docs/output-format.md), so
a worklist can route a result by its codes without parsing sentences.

Each code has one *concern*, what a reader has to check:

- ``count``: the level names may be shifted as a whole (a one-level miscount):
  count from a landmark.
- ``detection``: one vertebra may be missing, spurious or uncertain.
- ``input``: something about how the image was read.

This module imports nothing of spinelabel: the reader (``io``) and the
labeler both build warnings from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COUNT = "count"
DETECTION = "detection"
INPUT = "input"

#: What a summary line, an overlay's header and the review worklist add when a ``count`` warning comes with a result.
CHECK_THE_COUNT = "check the count"

#: Every warning code -> (concern, what it means). Codes are kept while the
#: output's ``schema_version`` is 1; new ones may be added.
CODES: dict[str, tuple[str, str]] = {
    "no-anchor": (COUNT, "no anchor vertebra (S1 or C2) is named: the names rest on the level estimates alone"),
    "anchor-unconfirmed": (COUNT, "an anchor is named, but the anchor detector does not confirm it"),
    "anchor-rival": (COUNT, "a detection the chain left out is a likelier anchor than the one named"),
    "level-offset": (COUNT, "the network's level estimates read a whole level or more from the names"),
    "direction-dependent": (COUNT, "without the learned step directions some names would differ"),
    "transitional": (COUNT, "a transitional vertebra (T13 or L6) is named"),
    "uncountable-variant": (COUNT, "a transitional count fits better, but this field of view cannot show it"),
    "upside-down": (COUNT, "the image turned head to foot gives surer names: is it stored upside down?"),
    "few-vertebrae": (COUNT, "too few vertebrae are named to check their spacing"),
    "assembled-body": (COUNT, "a level is named on a body assembled from two detections: one body, or two?"),
    "count-differs": (COUNT, "the count carried from a counting series and this series' own reading disagree: check the count in both"),
    "count-unconfirmed": (COUNT, "the names rest on a carried count alone: this series, with no sure count of its own, would name some vertebrae otherwise"),
    "missed-level": (DETECTION, "a level of the chain has no vertebra: a missed detection"),
    "missed-at-end": (DETECTION, "the image shows a level beyond the named ones whole, but it has no vertebra: look there"),
    "low-confidence": (DETECTION, "some names have a confidence below 0.5"),
    "candidates-capped": (DETECTION, "many strong candidates were left out: is this a spine image?"),
    "no-candidates": (DETECTION, "the detector found nothing to label"),
    "nothing-labeled": (DETECTION, "the labeler refused the image (review page: a scan with no labels)"),
    "series-chosen": (INPUT, "of several series in the input, the only sagittal one was read"),
    "echo-chosen": (INPUT, "of several echoes at the same positions, the longest was read"),
    "stack-chosen": (INPUT, "of several stacks at the same positions, the one --stack names was read"),
    "missing-slices": (INPUT, "slices are missing from the series' regular grid: filled in from their neighbours"),
    "irregular-spacing": (INPUT, "the slice steps are irregular: the median step was used"),
    "sheared-grid": (INPUT, "the slices are offset in-plane (gantry tilt): a sheared grid"),
    "count-carried": (INPUT, "the level names were counted from another series of the patient (--count-from)"),
    "forms-disagree": (INPUT, "the NIfTI sform and qform place the image differently: the sform was used"),
    "unspecified": (DETECTION, "a warning from a result written before warning codes existed"),
}


@dataclass(frozen=True)
class LabelWarning:
    """One warning: ``code`` (a key of :data:`CODES`) and ``text`` (a sentence for a person)."""

    code: str
    text: str

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown warning code {self.code!r}")

    def __str__(self) -> str:
        return self.text

    def line(self) -> str:
        """The text with its code, for a log or the command line: ``text [code]``."""
        return f"{self.text} [{self.code}]"

    @property
    def concern(self) -> str:
        """``count``, ``detection`` or ``input`` (module docstring)."""
        return CODES[self.code][0]


def texts(warnings: Iterable[LabelWarning]) -> list[str]:
    """The sentences of ``warnings``, in order (the JSON ``warnings``)."""
    return [w.text for w in warnings]


def codes(warnings: Iterable[LabelWarning]) -> list[str]:
    """The codes of ``warnings``, in order (the JSON ``warning_codes``)."""
    return [w.code for w in warnings]


def count_at_risk(warnings: Iterable[LabelWarning]) -> bool:
    """Whether any warning says the count itself may be wrong (concern ``count``)."""
    return any(w.concern == COUNT for w in warnings)


def count_note(warnings: Iterable[LabelWarning]) -> str:
    """`` - check the count (see the warnings)`` for a summary line when :func:`count_at_risk`, else ``""``."""
    return f" - {CHECK_THE_COUNT} (see the warnings)" if count_at_risk(warnings) else ""


def from_document(warning_texts: Sequence[str], warning_codes: Sequence[str] | None) -> list[LabelWarning]:
    """The warnings of a result document: its ``warnings`` with its ``warning_codes``.

    A document written before codes existed (no ``warning_codes``) or with a
    code this version does not know (or that is no string) gets
    ``unspecified`` for it.

    Raises
    ------
    ValueError
        ``warning_codes`` is given and its length differs from the texts'.
    """
    if warning_codes is None:
        warning_codes = ["unspecified"] * len(warning_texts)
    if len(warning_codes) != len(warning_texts):
        raise ValueError(f"{len(warning_texts)} warnings but {len(warning_codes)} warning codes")
    known = [isinstance(c, str) and c in CODES for c in warning_codes]
    return [LabelWarning(c if k else "unspecified", str(t)) for t, c, k in zip(warning_texts, warning_codes, known)]


def document_warnings(doc: Mapping[str, Any]) -> list[LabelWarning]:
    """The warnings of a result document (its ``warnings`` and ``warning_codes``, :func:`from_document`).

    Raises
    ------
    ValueError
        ``warnings`` or ``warning_codes`` is no list, or their lengths differ.
    """
    warning_texts, warning_codes = doc.get("warnings", []), doc.get("warning_codes")
    if not isinstance(warning_texts, list) or not (warning_codes is None or isinstance(warning_codes, list)):
        raise ValueError("\"warnings\" and \"warning_codes\" must be lists")
    return from_document([str(w) for w in warning_texts], warning_codes)
