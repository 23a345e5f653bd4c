"""Where published weights already on this disk are: torch hub's cache (torchvision's and timm's
URL weights) and the Hugging Face hub's cache (timm's hub weights). Only looked up, never
fetched: a file that is not there is a PretrainedWeightsError giving the exact path to put it
at. Both layouts follow their owners' rules (torch.hub.load_state_dict_from_url and
huggingface_hub's cache), so a cache filled on another machine with network is found as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch

from lightning_modules.nets.pretrained import PretrainedWeightsError

# Nothing is downloaded: said at the end of every message, so that a user does not wait for it.
NOT_DOWNLOADED = "tucker-sweep never downloads weights"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def torch_hub_checkpoints() -> Path:
    """torch hub's weights folder: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch), or
    what torch.hub.set_dir chose."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torch_hub_file(url: str, what: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """The file torch.hub.load_state_dict_from_url(url) would read without downloading: the
    URL's file name in `folder` (default torch_hub_checkpoints()). `what` names the weights
    in the message when it is not there."""
    name = os.path.basename(urlparse(url).path)
    path = Path(folder) / name if folder is not None else torch_hub_checkpoints() / name
    if not path.is_file():
        raise PretrainedWeightsError(
            f"{what} are not in torch hub's cache: put {name} (from {url}) at {path} "
            f"($TORCH_HOME moves the cache); {NOT_DOWNLOADED}"
        )
    return path


def hf_hub_cache() -> Path:
    """The Hugging Face hub's cache, as huggingface_hub finds it: $HF_HUB_CACHE, else the
    legacy $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub (default ~/.cache/huggingface/hub)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    chosen = (
        os.environ.get("HF_HUB_CACHE")
        or os.environ.get("HUGGINGFACE_HUB_CACHE")
        or os.path.join(home, "hub")
    )
    return Path(os.path.expandvars(os.path.expanduser(chosen)))


def hf_repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    """A model repository's folder in the cache: models--org--name."""
    return (cache or hf_hub_cache()) / "--".join(["models", *repo_id.split("/")])


def find_in_hf_cache(
    repo_id: str, filenames: Sequence[str], revision: str | None = None, cache: Path | None = None
) -> Path | None:
    """The first of `filenames` cached for `repo_id` at `revision` (a branch, a tag or a
    commit; default main), or None. The cache keeps refs/<revision> (the commit it points at)
    and snapshots/<commit>/<file>; .no_exist/<commit>/<file> records a file the hub lacks."""
    folder = hf_repo_folder(repo_id, cache)
    revision = revision or "main"
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    if not _COMMIT.match(commit):
        return None
    for filename in filenames:
        path = folder / "snapshots" / commit / filename
        if path.is_file():  # follows the snapshot's link into blobs/
            return path
    return None


def hf_hub_file(
    repo_id: str,
    filenames: Sequence[str],
    what: str,
    revision: str | None = None,
    cache: Path | None = None,
) -> Path:
    """find_in_hf_cache's file, or a PretrainedWeightsError naming the repository's folder."""
    found = find_in_hf_cache(repo_id, filenames, revision, cache)
    if found is not None:
        return found
    at = f"@{revision}" if revision else ""
    raise PretrainedWeightsError(
        f"{what} are not in the Hugging Face cache: put the repository {repo_id}{at} (its "
        f"{' or '.join(filenames)}) at {hf_repo_folder(repo_id, cache)}, e.g. copied from a "
        f"machine with network after `hf download {repo_id}` there ($HF_HUB_CACHE or $HF_HOME "
        f"moves the cache); {NOT_DOWNLOADED}"
    )
