"""Errors a user can act on, and the one way a pydantic validation error becomes a line of text.
The CLI prints these errors as one line and exits with status 2."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

# An error is one line: a value it echoes (a config value, an option mapping) is cut to this
# many characters, and so is the first line of an exception's message. An alias bomb in a
# config once gave a 58-million-character line.
ECHO_LIMIT = 200
LINE_LIMIT = 300


class TuckerSweepError(Exception):
    """Base of the service's own user-facing errors."""


class ConfigError(TuckerSweepError, ValueError):
    """A config file or flag that cannot be used; the message names the key."""


class TrackingError(TuckerSweepError, RuntimeError):
    """The MLflow tracking store cannot be reached or does not hold what was asked for."""


class ReportError(TrackingError):
    """The tracking store (or the sweep's Ray results) holds no usable sweep for what was asked:
    unknown, empty, every trial failed, no checkpoint to export."""


class SweepInterrupted(Exception):
    """The sweep stopped before its trials finished (a signal); it can be resumed.
    `exit_status`: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_status: int = 130) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def first_line(error: BaseException) -> str:
    """The part of an error's message that fits a one-line report."""
    return shorten((str(error).strip().splitlines() or [type(error).__name__])[0], LINE_LIMIT)


def user_message(error: BaseException) -> str:
    """What a user error says. One raised in a Ray task (the dense baseline, say) reaches the
    driver as Ray's RayTaskError subclass of its type, whose text is the task's traceback: the
    message is that of its `cause`, the error the task raised."""
    cause = getattr(error, "cause", None)
    return str(cause if isinstance(cause, BaseException) else error)


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` on one line, cut to about `limit` characters with a note of its full length."""
    text = " ".join(text.splitlines())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _bounded_repr() -> reprlib.Repr:
    # reprlib stops at a depth and a count of items, so even a structure that shares
    # sub-lists millions of times over (YAML aliases) is never expanded in full.
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxdict, bounded.maxlist, bounded.maxtuple = 3, 8, 8, 8
    bounded.maxstring = bounded.maxother = bounded.maxlong = ECHO_LIMIT
    return bounded


_REPR = _bounded_repr()


def echo(value: object) -> str:
    """repr(value) for an error message: bounded in depth and items, at most a line long."""
    return shorten(_REPR.repr(value))


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means "your input is wrong" rather than "the program is
    wrong". Imported on demand: importing Lightning takes seconds, and `--help` or a
    mistyped flag should answer at once."""
    from lightning_modules.data import DataError
    from lightning_modules.nets import RankPlanError, UnknownModelError
    from lightning_modules.nets.pretrained import PretrainedWeightsError
    from lightning_modules.ranks import NoDecomposableLayersError
    from lightning_modules.tucker import InvalidRanksError

    return (
        TuckerSweepError,
        DataError,
        RankPlanError,
        UnknownModelError,
        PretrainedWeightsError,
        InvalidRanksError,
        NoDecomposableLayersError,
    )


# ---- pydantic validation errors as one line -----------------------------------------------------

_TYPE_MISMATCH_SUFFIXES = ("_type", "_parsing", "literal_error")
_BUILTIN_TAGS = {"float", "int", "str", "bool", "none"}


def _is_union_tag(part: object) -> bool:
    """Pydantic names union members in error locations ('float', 'list[float]', a model's
    class name); they are not keys the user wrote."""
    if not isinstance(part, str):
        return False
    return "[" in part or part in _BUILTIN_TAGS or part[:1].isupper()


def field_path(location: Sequence[int | str]) -> str:
    """A pydantic location as the user wrote it: ('search', 'lr') -> search.lr, ('layers',
    'block2.conv1', 'candidates', 0) -> layers['block2.conv1'].candidates[0]."""
    text = ""
    for part in location:
        if _is_union_tag(part):
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        elif "." in part or not part.isidentifier():
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else part
    return text


def _message(problem: dict, show_value: bool) -> str:
    message = problem["msg"]
    if problem["type"] == "extra_forbidden":
        return "unknown key"
    if problem["type"] == "value_error":  # our validators' messages already show the value
        return shorten(str(problem["ctx"]["error"]), LINE_LIMIT)
    if problem["type"] == "missing" or not show_value:
        return message
    return f"{message} (got {echo(problem.get('input'))})"


def _problems_by_key(error: ValidationError) -> dict[str, dict]:
    """An error's problems by key, most telling first.

    For a value that fits no member of a union, a member's own complaint (a range check) says
    more than the other members' type mismatches, so it comes first; a key that several union
    members complain about counts once.
    """
    problems = sorted(
        error.errors(include_url=False),
        key=lambda p: p["type"].endswith(_TYPE_MISMATCH_SUFFIXES),
    )
    by_key: dict[str, dict] = {}
    for problem in problems:
        by_key.setdefault(field_path(problem["loc"]), problem)
    return by_key


def problem_keys(error: ValidationError) -> list[str]:
    """The keys of an error's problems, in the order describe_validation_error shows them."""
    return list(_problems_by_key(error))


def describe_validation_error(
    error: ValidationError,
    most: int = 1,
    show_value: bool = True,
    labels: Mapping[str, str] | None = None,
) -> str:
    """The `most` most telling problems as 'key.path: message (got value)', on one line,
    with a count of the rest. `labels` names keys otherwise: {'name': '--name'} for a value
    that came from a flag."""
    by_key = _problems_by_key(error)
    labels = labels or {}
    shown = []
    for key, problem in list(by_key.items())[:most]:
        label = shorten(labels.get(key, key))  # a key is the user's text too
        prefix = f"{label}: " if label else ""
        shown.append(prefix + _message(problem, show_value))
    more = len(by_key) - len(shown)
    suffix = f"; and {more} more problem{'s' if more > 1 else ''}" if more else ""
    return "; ".join(shown) + suffix
