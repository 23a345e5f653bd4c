"""URIs without their credentials, for everything the project writes or prints.

A tracking URI may carry a password (`http://user:pass@host`, `postgresql://user:pass@db`) or a
token in its query string. The driver needs the real URI to log; every file, pickle, report and
printed line gets `user:***@host` instead. The real URIs stay in this process only: a Tune
callback restored from Tune's pickled state (which holds the redacted form) gets its URI back
with `recall_uri` from the driver that restores it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.config import SweepConfig

MASK = "***"

# scheme://userinfo@ ; the userinfo runs to the last '@' before the host's end (a raw '@' in
# a password is a common slip, and must not leave the password's tail in clear).
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s@]*(?:@[^/?#\s@]*)*)@"
)
# ?token=..., &password=..., sig=... (Azure SAS), X-Amz-Signature=... (S3 presigned URLs).
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:[\w.\-]*(?:token|password|passwd|pwd|secret|signature|credential|api_?key"
    r"|access_?key|auth)[\w.\-]*|sig|key)=)(?P<value>[^&#\s'\"]+)",
    re.IGNORECASE,
)

# The driver's real URIs by their redacted form (this process only, never written anywhere).
_REAL_URIS: dict[str, str] = {}


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, password = match["userinfo"].partition(":")
    if not colon:
        # A lone userinfo is as often a token (https://<token>@host) as a user name.
        return f"{match['scheme']}{MASK}@" if user else match[0]
    if not password:
        return match[0]
    return f"{match['scheme']}{user}:{MASK}@"


def redact(text: str) -> str:
    """`text` with the credentials of every URI in it masked: passwords (user:***@), lone
    userinfo tokens (***@) and secret query parameters (?token=***)."""
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_QUERY.sub(lambda match: f"{match['key']}{MASK}", text)


def without_credentials(url: str) -> str:
    """`url` with no userinfo at all and its secret query parameters masked: a link to open in
    a browser, which asks for the credentials itself."""
    url = _USERINFO.sub(lambda match: match["scheme"], url)
    return _SECRET_QUERY.sub(lambda match: f"{match['key']}{MASK}", url)


def redact_values(value: Any) -> Any:
    """A copy of a nested structure (a config as a dict) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_values(item) for item in value)
    return value


def is_redacted(uri: str) -> bool:
    """Whether `uri` is a redacted form whose credentials were masked (so it cannot log)."""
    return f"{MASK}@" in uri or f"={MASK}" in uri


def remember_uri(uri: str) -> str:
    """Keep the real `uri` in this process, for `recall_uri`; returns its redacted form."""
    shown = redact(uri)
    if shown != uri:
        _REAL_URIS[shown] = uri
    return shown


def recall_uri(uri: str) -> str:
    """The real URI this process remembered for a redacted one (`uri` itself otherwise)."""
    return _REAL_URIS.get(uri, uri)


def without_tracking_credentials(config: SweepConfig) -> SweepConfig:
    """A copy of `config` with its tracking URI redacted: what the driver hands to Ray (task
    arguments, trials, Tune's pickled experiment), where nothing logs to MLflow."""
    uri = config.tracking.uri
    if uri is None or redact(uri) == uri:
        return config
    tracking = config.tracking.model_copy(update={"uri": redact(uri)})
    return config.model_copy(update={"tracking": tracking})
