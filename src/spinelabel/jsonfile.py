"""Reading a JSON file the user gave us: its value, or one line that says what is wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

from .errors import InputError, one_line


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` of ``text``, with nesting too deep for the parser reported as the ``ValueError`` every other
    malformed text gives (``json`` raises ``RecursionError`` for ``[[[...]]]`` some thousand levels deep).

    Raises
    ------
    ValueError
        Not valid JSON (``json.JSONDecodeError`` with its line and message), not UTF-8 (``UnicodeDecodeError``
        for bytes), nested too deeply, or an integer of more digits than Python converts (both in our words).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:  # sys.get_int_max_str_digits(): the interpreter's own words name a setting, not the file
        raise ValueError("a number too long to read") from None


def read_json(path: Path) -> Any:
    """The JSON value in ``path`` (UTF-8).

    Raises
    ------
    InputError
        The file cannot be read, is not UTF-8 text, or is not valid JSON; one line naming the file.
    """
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (UTF-8) JSON file") from None
    except ValueError as e:  # nested too deeply, an integer too long to read
        raise InputError(f"{path}: not valid JSON ({one_line(e)})") from None
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
