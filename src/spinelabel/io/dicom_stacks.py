"""Several stacks at the same slice positions in one DICOM series: which one to read.

A dual-echo (proton density and T2) or multi-echo acquisition stores one image
per echo at every slice position under one SeriesInstanceUID; Dixon series can
hold water, fat, in- and opposed-phase images the same way, and dynamic series
several time points. A volume has one image per position, so the loader picks
a stack or says why it cannot:

- echoes (``EchoTime``): the longest echo is read, with a warning. It is the
  most T2-weighted image, the contrast every shipped model was trained on most
  (the T2 sources and T2 phantoms; a proton-density echo looks like neither).
- other differences (``ImageType``, ``AcquisitionNumber``,
  ``TemporalPositionIdentifier``): no image is better than another for
  labeling, so the series is refused with the stacks listed.

The user can name the stack instead (``spinelabel label --stack VALUE``): a
value as the listing shows it, one backslash-separated part of it that no
other stack has (``W`` for ``DERIVED\\PRIMARY\\W``), or an echo time in ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import GeometryError, InputError
from ..warning_codes import LabelWarning

#: Header values that tell the stacks of one series apart, in the order tried.
STACK_KEYWORDS = ("EchoTime", "ImageType", "AcquisitionNumber", "TemporalPositionIdentifier")
#: Enhanced multi-frame files keep the echo time per frame: keyword -> (functional group sequence, keyword in it).
PER_FRAME = {"EchoTime": ("MREchoSequence", "EffectiveEchoTime")}


def as_text(value: Any) -> str:
    """A header value as it is compared between images: '' when absent, multiple values joined by backslashes."""
    from pydicom.multival import MultiValue

    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def has_duplicates(positions: np.ndarray, tol_mm: float) -> bool:
    """Whether two of ``positions`` (shape (n,), mm along the slice normal) are closer than ``tol_mm``."""
    return len(positions) > 1 and bool(np.diff(np.sort(positions)).min() < tol_mm)


def choose_stack(
    positions: np.ndarray, values: Mapping[str, Sequence[str]], uid: str, tol_mm: float, stack: str | None = None
) -> tuple[np.ndarray, list[LabelWarning]]:
    """The images of the one stack to read, and warnings.

    Parameters
    ----------
    positions : ndarray, shape (n,)
        Each image's position along the slice normal (mm).
    values : mapping of str to sequence of str
        ``STACK_KEYWORDS`` -> each image's value as text (``as_text``).
    uid : str
        The series, for messages.
    tol_mm : float
        Positions closer than this are the same.
    stack : str, optional
        The stack to read where there are several (:func:`pick_stack`); a
        series of one stack is read whatever it says.

    Returns
    -------
    keep : ndarray of int
        Indices of the images to read: all of them when no two share a
        position, or when no keyword separates them (the geometry check then
        refuses the duplicates).
    warnings : list of LabelWarning

    Raises
    ------
    GeometryError
        The stacks differ in something other than the echo time, and no
        ``stack`` was named.
    InputError
        ``stack`` names none of the stacks, or more than one.
    """
    everything = np.arange(len(positions))
    if not has_duplicates(positions, tol_mm):
        return everything, []
    for keyword in STACK_KEYWORDS:
        stacks: dict[str, list[int]] = {}
        for i, value in enumerate(values[keyword]):
            stacks.setdefault(value, []).append(i)
        if len(stacks) < 2 or any(has_duplicates(positions[members], tol_mm) for members in stacks.values()):
            continue
        listing = ", ".join(f"{v or '(none)'}: {len(m)} images" for v, m in stacks.items())
        if stack is not None:
            return _named_stack(stack, stacks, keyword, uid, listing)
        if keyword == "EchoTime" and all(_is_number(v) for v in stacks):
            longest = max(stacks, key=float)
            shown = ", ".join(f"{float(v):g}" for v in sorted(stacks, key=float))
            return np.array(stacks[longest]), [LabelWarning(
                "echo-chosen",
                f"series {uid} holds {len(stacks)} echoes at the same slice positions (TE {shown} ms): the "
                f"longest, TE {float(longest):g} ms (the most T2-weighted), was read",
            )]
        raise GeometryError(
            f"series {uid} holds {len(stacks)} images at each slice position, told apart by {keyword} ({listing}); "
            f"spinelabel reads one stack: name one with --stack, or export it as a series of its own"
        )
    return everything, []


def _named_stack(
    stack: str, stacks: dict[str, list[int]], keyword: str, uid: str, listing: str
) -> tuple[np.ndarray, list[LabelWarning]]:
    """The images of the stack ``stack`` names (:func:`pick_stack`) and a warning saying so; InputError for none."""
    named = pick_stack(stack, list(stacks), keyword == "EchoTime")
    if named is None:
        raise InputError(
            f"--stack {stack!r} names none or several of the {len(stacks)} stacks of series {uid}, told apart "
            f"by {keyword} ({listing}): give a value as listed, or a part of it that only one stack has"
        )
    return np.array(stacks[named]), [LabelWarning(
        "stack-chosen",
        f"series {uid} holds {len(stacks)} stacks at the same slice positions, told apart by {keyword} "
        f"({listing}): {named or '(none)'} was read (--stack {stack})",
    )]


def pick_stack(wanted: str, values: Sequence[str], numeric: bool) -> str | None:
    """The one of ``values`` (the stacks' header values) that ``wanted`` names, or None when it names none or several.

    ``wanted`` names a value when it equals it (ignoring case and the spaces
    around it), when it is one backslash-separated part of it that no other
    value has, or, for ``numeric`` values (echo times), when the numbers are
    equal.
    """
    key = wanted.strip().upper()
    for match in (
        lambda v: v.strip().upper() == key,
        lambda v: key in (part.strip().upper() for part in v.split("\\")),
        lambda v: numeric and _is_number(key) and _is_number(v) and float(v) == float(key),
    ):
        found = [v for v in values if match(v)]
        if found:
            return found[0] if len(found) == 1 else None
    return None


def _is_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False
