"""Errors that the command line reports as one clear line (no traceback)."""


class SpinelabelError(Exception):
    """Base class: a problem with the user's input or setup, not a bug."""


class InputError(SpinelabelError):
    """An input file, folder or series cannot be used (missing, corrupt, wrong kind)."""


class GeometryError(InputError):
    """The image geometry is unusable (2D, non-sagittal, degenerate)."""


class CountNotReachedError(InputError):
    """A counting series (``--count-from``) reaches none of the vertebrae named in the series it should count."""


class NothingFoundError(SpinelabelError):
    """No vertebrae were found: probably not a spine image of the requested region."""


class ModelError(SpinelabelError):
    """A model is missing, corrupt (checksum mismatch) or incompatible."""


class PacsError(SpinelabelError):
    """A DICOMweb server cannot be reached, refuses a request, or fails on it."""


class OutputError(SpinelabelError):
    """An output cannot be written (read-only or full disk, a folder in the way, a name used twice)."""


class ServeError(SpinelabelError):
    """The review page cannot be served (the port is taken, the address is not this machine's)."""


#: Most characters kept of an exception's message in :func:`one_line` (torch's messages span pages).
EXCEPTION_MESSAGE_LIMIT = 300


def one_line(message: str | BaseException) -> str:
    """``message`` as one printable line: for an error message, a log or a CSV cell.

    Runs of whitespace (newlines included) become one space; any other
    character that is not printable (a NUL or a terminal escape from a corrupt
    file's values) is shown escaped (``\\x1b``), never passed through.

    Parameters
    ----------
    message : str or BaseException
        A message of ours, kept whole; or an exception (typically a library's,
        wrapped into one of ours), shown by its message, or its type's name when
        that is empty, and cut to ``EXCEPTION_MESSAGE_LIMIT`` characters.

    Returns
    -------
    str
        The line; empty only for an empty (or all-whitespace) message string.
    """
    text = " ".join(str(message).split())
    if isinstance(message, BaseException):
        text = text or type(message).__name__
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    if isinstance(message, BaseException) and len(shown) > EXCEPTION_MESSAGE_LIMIT:
        return shown[: EXCEPTION_MESSAGE_LIMIT - 3] + "..."
    return shown
