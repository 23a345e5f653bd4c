"""Every image of a folder decoded once before anything trains: a corrupt or unreadable file is
then one line naming it (or, with skip_bad_images, left out and listed) when the data module is
built, in the driver of a sweep, not a failed epoch in a DataLoader worker of some trial.

The verdicts are kept per node in the data folder ($TUCKER_SWEEP_DATA or
~/.cache/tucker-sweep/data, image_checks/), keyed by the listing (every path, size and
modification time): the trials on a node, each building its own data module, find them there
instead of reading the whole data set again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from filelock import FileLock
from PIL import Image

from .errors import first_line
from .image_dataset import pillow_reason
from .image_files import ImageFile, ImageSource, reader_threads
from .vision import data_home

CHECKS_FOLDER = "image_checks"
# Part of the key: a change to what counts as bad must not reuse older verdicts.
CHECK_VERSION = 1


def decode_problem(data: bytes) -> str | None:
    """Why Pillow cannot decode an image file's bytes, or None when it can."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # JPEG decodes at 1/8 scale in draft mode, still reading every byte of the stream
            # (a truncated file fails); other formats ignore it and decode fully.
            image.draft(image.mode, (1, 1))
            image.load()
    except Exception as err:  # a decoder meets untrusted bytes: whatever it raises, it's bad
        return pillow_reason(err)
    return None


def _problem(source: ImageSource, path: str) -> tuple[str | None, bool]:
    """(why the file is bad or None, whether reading it failed: maybe transient, not kept)."""
    try:
        data = source.read(path)
    except OSError as err:
        return f"cannot read it ({first_line(err)})", True
    return decode_problem(data), False


def find_bad_images(source: ImageSource, files: Sequence[ImageFile]) -> tuple[dict[str, str], bool]:
    """Bad files (relative path -> reason) and whether any failed to read rather than decode."""
    with ThreadPoolExecutor(max_workers=reader_threads(source.root)) as pool:
        results = list(pool.map(lambda file: _problem(source, file.path), files))
    bad = {file.path: reason for file, (reason, _) in zip(files, results, strict=True) if reason}
    return bad, any(read_failed for _, read_failed in results)


def listing_key(root: str, files: Sequence[ImageFile]) -> str:
    digest = hashlib.sha256(f"{CHECK_VERSION}\n{root}\n".encode())
    for file in files:
        digest.update(f"{file.path}\t{file.size}\t{file.mtime_ns}\n".encode())
    return digest.hexdigest()


def checked_bad_images(source: ImageSource, files: Sequence[ImageFile]) -> dict[str, str]:
    """find_bad_images, once per node and listing: concurrent callers wait for the first."""
    folder = data_home() / CHECKS_FOLDER
    verdicts = folder / f"{listing_key(source.root, files)}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{verdicts}.lock")
        lock.acquire()
    except OSError:  # no writable data folder: check every time instead
        return find_bad_images(source, files)[0]
    try:
        try:
            return dict(json.loads(verdicts.read_text())["bad"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not checked yet (or a damaged file): check now
        bad, read_failed = find_bad_images(source, files)
        if not read_failed:  # a failed read may be the network's fault: ask again next time
            _write(verdicts, {"root": source.shown_root, "bad": bad})
        return bad
    finally:
        lock.release()


def _write(path: Path, verdicts: dict) -> None:
    written = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        written.write_text(json.dumps(verdicts))
        os.replace(written, path)  # whole or not at all, for a reader on another process
    except OSError:
        pass  # a full or read-only disk: the next caller checks again
