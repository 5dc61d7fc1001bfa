"""All exceptions and warnings hepsafe raises on purpose, in one place.

Every message names the file, branch, field or option at fault and what was expected.
The modules that raise them import them from here (and re-export the ones they always
offered: :class:`~hepsafe.pipeline.FitFailed`, :class:`~hepsafe.pipeline.GateFailed`,
:class:`~hepsafe.attacks.AttackFallbackWarning`, :class:`~hepsafe.coffea.run.SkippedFilesWarning`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hepsafe.pipeline import RunResult


class HepsafeError(Exception):
    """Base class of every error raised by hepsafe on purpose."""


class InputError(HepsafeError, ValueError):
    """Input data are malformed: a missing branch or field, a wrong dtype, NaN values."""


class CardError(HepsafeError, ValueError):
    """A model card or dataset card is invalid or disagrees with what it describes."""


class ModelError(HepsafeError, ValueError):
    """An ONNX graph cannot be used as described (names, ranks, dtypes, providers)."""


class ConversionError(ModelError):
    """An ONNX graph cannot be converted to torch (names the unsupported operator)."""


class ConfigError(HepsafeError, ValueError):
    """A configuration file or option is invalid (names the key and the expected type/range)."""


class EnvelopeError(HepsafeError, ValueError):
    """An uncertainty envelope is invalid (negative bound, unknown particle class, ...)."""


class TemplateError(HepsafeError, ValueError):
    """Histogram templates are inconsistent (binning, missing nominal, bad yields)."""


class WorkspaceError(HepsafeError, ValueError):
    """A pyhf workspace or patch cannot be built or applied (names channel/sample)."""


class OutputError(HepsafeError, OSError):
    """An output directory cannot be written or replaced (names it and says why)."""


class OutputExistsError(OutputError, FileExistsError):
    """An output directory or file exists and --force was not given."""


class OutputLockedError(OutputError):
    """Another hepsafe process is writing the same output directory (names its pid)."""


class FitError(HepsafeError, ValueError):
    """Templates cannot be fitted as they are (empty background bins, a refused one-sided
    variation, a fit that does not converge); the message names the remedy."""


class FitFailed(FitError):
    """Raised by :func:`hepsafe.pipeline.run` after the output directory is written when the
    fit could not be done; carries the result (``fit`` empty)."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


class GateFailed(Exception):
    """Raised by :func:`hepsafe.pipeline.run` with ``strict_gate`` when a gate failed;
    carries the result."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


class TemplateWarning(UserWarning):
    """Templates were changed to make them usable (negative yields clipped, ...)."""


class MirrorWarning(TemplateWarning):
    """A one-sided variation was mirrored to give its missing side (names sample and
    variation)."""


class AttackFallbackWarning(UserWarning):
    """A gradient attack was replaced by SPSA because the graph cannot be converted to torch."""


class SkippedFilesWarning(UserWarning):
    """Files (or parts of files) of a fileset were skipped (``skipbadfiles=True``)."""
