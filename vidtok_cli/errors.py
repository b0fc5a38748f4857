"""One exception hierarchy for vidtok; the CLI turns each into a one-line message and an exit code."""

from __future__ import annotations


class VidtokError(Exception):
    """Base class of every error vidtok reports to a user (exit code 1 in the CLI)."""

    exit_code = 1


class UsageError(VidtokError):
    """Impossible or contradictory options (exit code 2 in the CLI)."""

    exit_code = 2


class ConfigError(VidtokError):
    """An architecture config that cannot be read or does not describe a supported model."""


class ModelNotFoundError(VidtokError):
    """A model name that is neither a zoo card, a local file nor a Hub reference."""


class CheckpointError(VidtokError):
    """A checkpoint file that cannot be read, or whose weights do not fit the architecture."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle would run code; it is refused without unpickling that code."""


class WeightsUnavailableError(VidtokError):
    """Weights that are neither cached locally nor downloadable right now."""
