"""timm's models by name (`model.timm`): timm.create_model(name, **options), the data's channels
and classes filled in where the options do not give them, and their published weights read
from the local caches (`model.pretrained`).

Nothing is downloaded: the weights file is found here, in the Hugging Face cache (where timm
keeps the weights it publishes on the hub) or in torch hub's (its older URL weights), and
handed to timm as a local file (its pretrained_cfg's `file`, which timm prefers to every
remote source). timm then adapts them as it always does: a new head for another number of
classes, the input conv summed or repeated for other than 3 channels.
"""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import Any

from torch import nn

from lightning_modules.nets.optional import importing
from lightning_modules.nets.options import raised
from lightning_modules.nets.pretrained import PretrainedWeightsError
from lightning_modules.nets.user_models import UnknownModelError, pop_pretrained
from lightning_modules.nets.weight_caches import find_in_hf_cache, hf_hub_file, torch_hub_file

# The file names timm asks the hub for: its default, and the safetensors file it tries first.
HF_WEIGHTS = "pytorch_model.bin"
_SAFE_ALTERNATIVES = {
    HF_WEIGHTS: "model.safetensors",
    "open_clip_pytorch_model.bin": "open_clip_model.safetensors",
}


def from_timm(name: str, in_channels: int, num_classes: int, options: dict[str, Any]) -> nn.Module:
    """timm.create_model(name, num_classes=..., in_chans=..., **options), freshly initialised;
    with `pretrained: True` among the options, with its published weights from the caches."""
    label = f"model timm: {name}"
    options = dict(options)
    pretrained = pop_pretrained(options, label)
    if ":" in name:
        # "hf-hub:org/repo" and "local-dir:path" make timm read a config from the hub or a folder.
        raise UnknownModelError(
            f"{label}: give a model name of timm.list_models() (with a .tag if you like), not a "
            "hub or folder reference"
        )
    with importing("timm", label, extra="timm"):
        import timm
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise UnknownModelError(f"unknown {label}: not in timm.list_models(){hint}")
    kwargs = {"num_classes": num_classes, "in_chans": in_channels, **options}
    if pretrained:
        if "pretrained_cfg" in kwargs:  # its own source could be the hub: refused, not fetched
            raise UnknownModelError(
                f"{label}: option 'pretrained_cfg' is not passed on with model.pretrained (the "
                "weights are found by the model's name; a .tag picks other ones)"
            )
        file = _cached_weights_of(timm, name, label, kwargs.get("cache_dir"))
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
        # A local file, and no "hf-hub" source, which timm would prefer to the file.
        kwargs["pretrained_cfg_overlay"] = {**overlay, "file": str(file), "source": None}
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as error:  # bad options or tags, in timm's words
        raise UnknownModelError(f"{label}: {raised(error)}") from None


def _cached_weights_of(timm: Any, name: str, label: str, cache_dir: object) -> Path:
    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception as error:  # a tag the architecture does not have
        raise UnknownModelError(f"{label}: {raised(error)}") from None
    if cfg is None or not cfg.has_weights:
        raise UnknownModelError(
            f"{label} has no published weights (timm.list_pretrained() lists the models that do)"
        )
    return cached_weights(
        label,
        hf_hub_id=cfg.hf_hub_id,
        hf_hub_filename=cfg.hf_hub_filename,
        url=cfg.url,
        file=cfg.file,
        cache_dir=Path(str(cache_dir)).expanduser() if cache_dir else None,
    )


def cached_weights(
    label: str,
    *,
    hf_hub_id: str | None = None,
    hf_hub_filename: str | None = None,
    url: str | tuple[str, ...] | None = None,
    file: str | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """The weights file a timm pretrained_cfg points at, found on this disk: `file` itself;
    the hub repository `hf_hub_id` ("org/name", "@revision" allowed) in the Hugging Face cache
    (`cache_dir` instead, as timm's own option), the safetensors file first as timm does; or
    the file of `url` in torch hub's cache (`cache_dir` instead). A PretrainedWeightsError
    saying where to put it otherwise."""
    what = f"the weights of {label}"
    if file:
        if not Path(file).is_file():
            raise PretrainedWeightsError(f"{what} are to be the file {file}, which is not there")
        return Path(file)
    url = url[0] if isinstance(url, tuple | list) else url
    if hf_hub_id:
        repo_id, _, revision = hf_hub_id.partition("@")
        filenames = hub_filenames(hf_hub_filename or HF_WEIGHTS)
        found = find_in_hf_cache(repo_id, filenames, revision or None, cache_dir)
        if found is None and url:  # the same weights where timm kept them before the hub
            with contextlib.suppress(PretrainedWeightsError):
                return torch_hub_file(url, what, cache_dir)
        return found or hf_hub_file(repo_id, filenames, what, revision or None, cache_dir)
    if url:
        return torch_hub_file(url, what, cache_dir)
    raise UnknownModelError(f"{label} has no published weights")


def hub_filenames(filename: str) -> list[str]:
    """The files timm would read for `filename` on the hub, in its order: a safetensors
    alternative first (model.safetensors for pytorch_model.bin), then the file itself."""
    if filename in _SAFE_ALTERNATIVES:
        return [_SAFE_ALTERNATIVES[filename], filename]
    if filename.endswith(".bin"):
        return [filename.removesuffix(".bin") + ".safetensors", filename]
    return [filename]
