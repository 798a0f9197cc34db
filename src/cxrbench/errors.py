"""User-facing errors: each message names what is at fault and how to fix it.

The CLI turns any `CxrbenchError` into a one-paragraph message and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class CxrbenchError(Exception):
    """Base class of errors that are the user's to fix (bad input, missing files, bad options)."""


class SpecError(CxrbenchError):
    """A YAML spec or registry entry is malformed."""


class UnknownNameError(CxrbenchError):
    """A name is not in the registry; the message lists the closest known names."""


class DataError(CxrbenchError):
    """A dataset on disk is missing files, columns or ids, or a split is unusable."""


class ImageReadError(DataError):
    """An image file cannot be decoded."""


class WeightsError(CxrbenchError):
    """Encoder weights are missing, of the wrong architecture, or fail a checksum."""


class CacheError(CxrbenchError):
    """The feature cache is inconsistent with the request."""


class StorageError(CxrbenchError):
    """A file could not be written (disk full, quota, read-only, permissions)."""
