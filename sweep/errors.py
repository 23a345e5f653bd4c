"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class TuckerSweepError(Exception):
    """Base of the service's own user-facing errors."""


class ConfigError(TuckerSweepError, ValueError):
    """A config file or flag that cannot be used; the message names the key."""


class TrackingError(TuckerSweepError, RuntimeError):
    """The MLflow tracking store cannot be reached or does not hold what was asked for."""


class SweepInterrupted(Exception):
    """The sweep stopped before its trials finished (Ctrl-C); it can be resumed."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means "your input is wrong" rather than "the program is
    wrong". Imported on demand: importing Lightning takes seconds, and `--help` or a
    mistyped flag should answer at once."""
    from lightning_modules.data import DataError
    from lightning_modules.models import RankPlanError, UnknownModelError
    from lightning_modules.tucker_cost import InvalidRanksError

    return (TuckerSweepError, DataError, RankPlanError, UnknownModelError, InvalidRanksError)
