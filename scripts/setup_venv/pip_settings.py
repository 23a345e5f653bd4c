"""The machine's pip configuration, as `pip install` would apply it.

uv reads none of pip's configuration, yet a machine may only work through it: a wheel that lies
on disk behind `find-links`, a mirror behind `index-url`, a company CA behind `cert`. So the
settings are asked of pip itself and handed on to uv (uv_options.py).
"""

from __future__ import annotations

import ast
import subprocess
from dataclasses import dataclass

# pip's own precedence for `pip install`: the [global] section, then the command's own [install]
# section, then PIP_* environment variables (`:env:`), each overriding the one before.
SECTIONS_BY_PRECEDENCE = ("global", "install", ":env:")

_TRUE = {"1", "y", "yes", "t", "true", "on"}
_FALSE = {"0", "n", "no", "f", "false", "off"}


@dataclass(frozen=True)
class PipSettings:
    """The install settings of pip's configuration that change what gets installed from where."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    constraints: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    only_binary: tuple[str, ...] = ()
    no_binary: tuple[str, ...] = ()
    pre: bool = False
    no_compile: bool = False
    cert: str | None = None
    client_cert: str | None = None
    timeout: str | None = None
    proxy: str | None = None
    # Set keys that no uv option matches (named in the installer's line, not silently dropped).
    unmatched: tuple[str, ...] = ()

    def names(self) -> list[str]:
        """pip's names of the settings that are set, for the one line saying what was honoured."""
        return [name for name, (field, _, _) in OPTIONS.items() if getattr(self, field)]


# pip's option name -> (PipSettings field, how pip reads the configured text, other spellings):
# the one table that builds the settings and names them. `one`: the text as written; `many`: a
# list option, split on whitespace (spaces or lines) as pip splits it; `flag`: a boolean;
# `inverted`: pip stores a configured boolean into the option's destination as written, and
# --no-compile's destination is `compile`, so `no-compile = false` is what turns compiling off.
OPTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "index-url": ("index_url", "one", ()),
    "extra-index-url": ("extra_index_urls", "many", ()),
    "find-links": ("find_links", "many", ()),
    "no-index": ("no_index", "flag", ()),
    "constraint": ("constraints", "many", ()),
    "trusted-host": ("trusted_hosts", "many", ()),
    "only-binary": ("only_binary", "many", ()),
    "no-binary": ("no_binary", "many", ()),
    "pre": ("pre", "flag", ()),
    "no-compile": ("no_compile", "inverted", ()),
    "cert": ("cert", "one", ()),
    "client-cert": ("client_cert", "one", ()),
    "timeout": ("timeout", "one", ("default-timeout",)),
    "proxy": ("proxy", "one", ()),
}

# pip options that only change how pip itself talks or logs; nothing to hand on.
_NOT_ABOUT_WHAT_IS_INSTALLED = {
    "disable-pip-version-check",
    "config-file",
    "quiet",
    "verbose",
    "progress-bar",
    "no-color",
    "no-cache-dir",
    "cache-dir",
    "log",
    "root-user-action",
    "no-input",
    "retries",
    "exists-action",
    "require-virtualenv",
    "break-system-packages",
    "user",
    "no-warn-script-location",
    "python",
}


def parse_config_list(text: str) -> dict[str, str]:
    """`pip config list` output (`section.key='value'`, one per line) as {"section.key": value}."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, literal = line.partition("=")
        if not sep:
            continue
        try:
            value = ast.literal_eval(literal)  # pip writes each value with %r
        except (ValueError, SyntaxError):
            value = literal
        values[key.strip()] = str(value)
    return values


def effective(values: dict[str, str], name: str, *aliases: str) -> str | None:
    """The value `pip install` would use for option `name` (e.g. "find-links"), or None.

    `aliases` are the option's other spellings (pip's --timeout is also --default-timeout); a
    later section wins whichever spelling it uses.
    """
    found = None
    for section in SECTIONS_BY_PRECEDENCE:
        for spelling in (name, *aliases):
            found = values.get(f"{section}.{spelling}", found)
    return found


def _read(text: str | None, how: str) -> str | tuple[str, ...] | bool | None:
    word = (text or "").strip().lower()
    if how == "many":
        return tuple((text or "").split())
    if how == "flag":
        return word in _TRUE
    if how == "inverted":
        return text is not None and word in _FALSE
    return text


def settings_from_values(values: dict[str, str]) -> PipSettings:
    """The install settings in a parsed `pip config list`."""
    read = {
        field: _read(effective(values, name, *aliases), how)
        for name, (field, how, aliases) in OPTIONS.items()
    }
    set_names = {
        key.partition(".")[2] for key in values if key.partition(".")[0] in SECTIONS_BY_PRECEDENCE
    }
    known = {spelling for name, (_, _, aliases) in OPTIONS.items() for spelling in (name, *aliases)}
    unmatched = tuple(sorted(set_names - known - _NOT_ABOUT_WHAT_IS_INSTALLED))
    return PipSettings(**read, unmatched=unmatched)


def read_pip_settings(python: str) -> tuple[PipSettings, str | None]:
    """pip's install settings as `python -m pip` sees them, and why none could be read (or None).

    One `pip config list` rather than a `pip config get` per key: the same store, in one call
    (each pip start costs a few hundred milliseconds).
    """
    try:
        listed = subprocess.run(
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:
        return PipSettings(), f"pip could not be started ({error})"
    if listed.returncode != 0:
        reason = (listed.stderr.strip().splitlines() or ["no message"])[-1]
        return PipSettings(), f"`pip config list` failed: {reason}"
    return settings_from_values(parse_config_list(listed.stdout)), None
