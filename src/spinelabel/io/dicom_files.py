"""Reading one DICOM file: a Part 10 file, or a bare dataset without the preamble and its "DICM" marker.

Some archives keep bare datasets: objects stored as they arrived over the
network, the Conquest server's ``.v2`` files. pydicom reads those only with
``force=True``, which also turns any file at all into a dataset of nonsense
elements; so a file without the marker is read only when it starts as a
dataset does (the little-endian tag of a File Meta or Identifying element,
:data:`FIRST_GROUPS`) and names its SOP class and instance. Being
uncompressed by necessity (no File Meta Information says otherwise), its
transfer syntax is the encoding pydicom found.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

#: Where a Part 10 file carries its marker: after a 128-byte preamble.
PART10_PREAMBLE = 128
PART10_MAGIC = b"DICM"
#: Groups a bare dataset starts with: 0002 (File Meta Information without the preamble) or 0008 (Identifying:
#: (0008,0005) Specific Character Set, (0008,0008) Image Type, (0008,0016) SOP Class UID ...).
FIRST_GROUPS = (0x0002, 0x0008)
#: Element numbers a dataset's first element has in those groups (the group's lowest elements come first).
MAX_FIRST_ELEMENT = 0x0100
#: Longest value of a dataset's first element in implicit VR: a group length (4 bytes), a character set (up to a few
#: terms of 16) or an image type (a few terms of 16); a larger length means the bytes are no DICOM tag.
MAX_FIRST_LENGTH = 1024
#: Value representations (PS3.5 6.2), for a first element in explicit VR.
VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(PART10_PREAMBLE + len(PART10_MAGIC))


def is_part10(head: bytes) -> bool:
    """True when ``head`` (a file's first 132 bytes) carries the Part 10 marker."""
    return head[PART10_PREAMBLE:PART10_PREAMBLE + len(PART10_MAGIC)] == PART10_MAGIC


def starts_like_a_dataset(head: bytes) -> bool:
    """True when ``head`` starts as a dataset's first element does: a little-endian tag of :data:`FIRST_GROUPS`,
    then a value representation (explicit VR) or a plausible length (implicit VR)."""
    if len(head) < 8:
        return False
    group, element, length = struct.unpack("<HHI", head[:8])
    if group not in FIRST_GROUPS or element >= MAX_FIRST_ELEMENT:
        return False
    return head[4:6] in VRS or length <= MAX_FIRST_LENGTH


def is_dicom_file(path: Path) -> bool:
    """True for a Part 10 file or a file that starts like a bare dataset (unreadable files: False)."""
    try:
        head = _head(path)
    except OSError:
        return False
    return is_part10(head) or starts_like_a_dataset(head)


def read_dicom(path: Path, **kwargs: Any) -> Any:
    """The dataset of a DICOM file, Part 10 or bare (``kwargs`` go to ``pydicom.dcmread``).

    Raises
    ------
    pydicom.errors.InvalidDicomError
        Not a DICOM file.
    OSError
        The file cannot be read.
    Exception
        What pydicom raises for a damaged DICOM file.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    head = _head(path)
    if is_part10(head):
        return pydicom.dcmread(path, **kwargs)
    if not starts_like_a_dataset(head):
        raise InvalidDicomError(f"{path}: not a DICOM file")
    ds = pydicom.dcmread(path, force=True, **kwargs)
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise InvalidDicomError(f"{path}: not a DICOM object (no SOP Class or Instance UID)")
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        implicit, _little = ds.original_encoding
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    if "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return ds
