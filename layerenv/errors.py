"""The one exception family layerenv raises; the CLI turns each into one line and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class LayerenvError(Exception):
    """A failure the user should read as one line; ``exit_code`` says which kind."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(LayerenvError):
    """The user gave something layerenv cannot accept: a value, a file, a flag."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """A configuration file or value is malformed; the message names the file and key."""


class OperationFailed(LayerenvError):
    """Something layerenv tried did not work: an installer, a verification, the disk."""

    exit_code = EXIT_FAILURE


class ConflictError(LayerenvError):
    """No torch build serves every visible GPU and ``--strict`` was asked for."""

    exit_code = EXIT_FAILURE
