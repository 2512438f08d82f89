"""Errors that the command line reports as one clear line (no traceback)."""


class SpinelabelError(Exception):
    """Base class: a problem with the user's input or setup, not a bug."""


class InputError(SpinelabelError):
    """An input file, folder or series cannot be used (missing, corrupt, wrong kind)."""


class GeometryError(InputError):
    """The image geometry is unusable (2D, non-sagittal, degenerate)."""


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
