"""User-facing errors.

A :class:`LadderError` is a mistake the user can fix (bad input, a missing file, an
unreachable endpoint). The CLI prints its message as one line and exits with code 2;
anything else is a bug and keeps its traceback.
"""

__all__ = ["ConfigError", "EndpointError", "LadderError", "ModelLoadError", "UnsupportedError"]


class LadderError(Exception):
    """A user-fixable problem. The message names what and where, and what to do."""

    exit_code = 2


class ConfigError(LadderError):
    """A config file, a task file or a CLI value is invalid."""


class ModelLoadError(LadderError):
    """A model spec cannot be resolved or its checkpoint cannot be loaded."""


class EndpointError(LadderError):
    """An API endpoint is unreachable, refuses our key, or answers with an error."""


class UnsupportedError(LadderError):
    """The backend cannot do what was asked (e.g. log-likelihood without logprobs)."""
