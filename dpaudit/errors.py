"""Exceptions shared by every layer.

The CLI turns :class:`DPAuditError` (and its subclasses) into one readable line and a
non-zero exit code; library users catch them like any ``ValueError``.
"""


class DPAuditError(Exception):
    """Base class for errors dpaudit reports to the user."""


class InvalidParameterError(DPAuditError, ValueError):
    """An input value is outside the domain a method accepts (delta >= 1, sigma < 0, ...)."""


class OutOfValidityError(DPAuditError, ValueError):
    """A method cannot give a sound answer for these inputs and no sound fallback exists."""


class UntrustedFileError(DPAuditError):
    """A file could not be loaded safely (corrupt, wrong format, or needs arbitrary unpickling)."""


class OutputError(DPAuditError):
    """An output (file or report folder) cannot be written; raised before any long work."""
