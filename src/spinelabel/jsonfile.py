"""Reading a JSON file the user gave us: its value, or one line that says what is wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

from .errors import InputError


def read_json(path: Path) -> Any:
    """The JSON value in ``path`` (UTF-8).

    Raises
    ------
    InputError
        The file cannot be read, is not UTF-8 text, or is not valid JSON; one line naming the file.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (UTF-8) JSON file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def is_finite_number(value: Any) -> TypeGuard[float]:
    """Whether a JSON value is a finite number: an int or float, not a bool, not NaN or infinite.

    An integer too large for a float (``1`` and 400 zeros) is not finite either.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
