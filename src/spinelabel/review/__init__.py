"""``spinelabel review``: a local page on which a radiologist confirms or corrects the labels.

:func:`prepare_scans` labels the inputs (or reads their existing results),
:class:`ReviewSession` holds them and saves reviews, and :func:`make_server`
serves the page (assets in ``static/``) for one session.
"""

from __future__ import annotations

from .edits import ACCEPTED, CORRECTED, REVIEWED_STATES, UNREVIEWED, ReviewOrderError, ReviewRequestError, review_status
from .server import DEFAULT_PORT, MAX_BODY_BYTES, ReviewServer, make_server
from .session import ReviewConflictError, ReviewScan, ReviewSession, load_result_doc, prepare_scans

__all__ = [
    "ACCEPTED", "CORRECTED", "DEFAULT_PORT", "MAX_BODY_BYTES", "REVIEWED_STATES", "UNREVIEWED", "ReviewConflictError",
    "ReviewOrderError", "ReviewRequestError", "ReviewScan", "ReviewServer", "ReviewSession", "load_result_doc", "make_server",
    "prepare_scans", "review_status",
]
