"""Checks of a model's options and the one-line text of what a model's code raised.

A built-in network checks its own options in its constructor: torch would otherwise take a
width of -1 for a negative tensor size (a traceback) and a width of 0 for empty layers (a
warning per layer, then a shape error in the forward pass).
"""

from __future__ import annotations

import reprlib

# Values a message echoes are cut to a line: options can be anything a YAML file holds.
_ECHO = reprlib.Repr()
_ECHO.maxlevel, _ECHO.maxdict, _ECHO.maxlist, _ECHO.maxstring, _ECHO.maxother = 3, 8, 8, 80, 80
_LINE_LIMIT = 300


def whole_number(name: str, value: object, least: int = 1) -> int:
    """`value` as an int of at least `least`, or ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, got {echo(value)}")
    return value


def fraction(name: str, value: object) -> float:
    """`value` as a float in [0, 1), or ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {echo(value)}")
    return float(value)


def echo(value: object) -> str:
    """A bounded repr of `value` for a message (depth, items and length capped)."""
    return _ECHO.repr(value)


def one_line(error: BaseException) -> str:
    """An error's message on one line, cut to a line's length."""
    text = " ".join(str(error).split())
    return text[:_LINE_LIMIT] + "..." if len(text) > _LINE_LIMIT else text


def raised(error: BaseException) -> str:
    """'ZeroDivisionError: division by zero': what a user's code raised, on one line."""
    text = one_line(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
