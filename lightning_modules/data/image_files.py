"""Where an image folder's files are: a local folder or any URI pyarrow opens (s3://, gs://),
listed once into class labels and splits, each file read whole by whichever process needs it.

    root/<class>/<image>                       one folder per class; splits carved by seed
    root/train/<class>/<image>, root/val/...   given splits (val/ and test/ each optional)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from .base import available_cpus
from .errors import DatasetUnavailableError, InvalidDatasetError, first_line

# What Pillow decodes and people keep image data sets in; other files (notes, .DS_Store,
# label lists) are not images and are left out.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
SPLIT_FOLDERS = ("train", "val", "test")
# Reading object storage waits on the network, not on a core: more threads than cores pay.
REMOTE_READ_THREADS = 16
LAYOUT = "root/<class>/<image>, or root/train/<class>/<image> with optional val/ and test/"


def is_remote(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def reader_threads(root: str) -> int:
    """Threads for reading (and decoding) many files of `root` at once."""
    return REMOTE_READ_THREADS if is_remote(root) else max(2, available_cpus())


class ImageSource:
    """The files under one root, read by relative path. Picklable: it keeps only the root, and
    each process opens the filesystem itself on first use (a DataLoader worker or a Ray worker
    must not share the S3 client of the process it came from: fork copies its connections and
    threads half-way)."""

    def __init__(self, root: str) -> None:
        if not is_remote(root):
            # Made absolute here: Ray runs trials in folders of their own.
            local = root.removeprefix("file://")
            root = str(Path(local).expanduser().resolve())
        self.root = root
        self._opened: tuple[int, pafs.FileSystem, str] | None = None

    def __getstate__(self) -> dict:
        return {"root": self.root, "_opened": None}

    @property
    def shown_root(self) -> str:
        """The root as a person reads it: without a URI's query (endpoint, options)."""
        return self.root.split("?", 1)[0].rstrip("/")

    def shown(self, relative: str) -> str:
        return f"{self.shown_root}/{relative}"

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """This process's filesystem of the root, and the root's path within it."""
        if self._opened is None or self._opened[0] != os.getpid():
            try:
                if is_remote(self.root):
                    filesystem, base = pafs.FileSystem.from_uri(self.root)
                else:
                    filesystem, base = pafs.LocalFileSystem(), self.root
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise DatasetUnavailableError(
                    f"cannot open {self.shown_root}: {first_line(err)}"
                ) from err
            self._opened = (os.getpid(), filesystem, base.rstrip("/"))
        _, filesystem, base = self._opened
        return filesystem, base

    def read(self, relative: str) -> bytes:
        """The whole file: one request on object storage, where small reads cost one each."""
        filesystem, base = self.filesystem()
        # compression=None: a name ending in .gz must not be unpacked on the way.
        with filesystem.open_input_stream(f"{base}/{relative}", compression=None) as stream:
            return stream.read()


@dataclass(frozen=True)
class ImageFile:
    path: str  # relative to the root, "/"-separated
    size: int
    mtime_ns: int | None


@dataclass
class ImageTree:
    """The images of a root by class: `classes` sorted (a label is an index into it), and per
    part ("all" without split folders, else those of train/val/test present) the files and
    their labels in path order."""

    classes: tuple[str, ...]
    parts: dict[str, list[tuple[ImageFile, int]]] = field(default_factory=dict)

    @property
    def files(self) -> list[ImageFile]:
        return [file for part in self.parts.values() for file, _ in part]


def _entries(source: ImageSource) -> list[pafs.FileInfo]:
    filesystem, base = source.filesystem()
    try:
        kind = filesystem.get_file_info(base).type
        if kind == pafs.FileType.NotFound:
            raise DatasetUnavailableError(
                f"no folder at {source.shown_root}: give the root of an image folder ({LAYOUT})"
            )
        if kind != pafs.FileType.Directory:
            raise InvalidDatasetError(
                f"{source.shown_root} is a file: give the folder that holds one folder per "
                f"class ({LAYOUT})"
            )
        return filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as err:
        raise DatasetUnavailableError(
            f"cannot list {source.shown_root}: {first_line(err)}"
        ) from err


def _relative_parts(info: pafs.FileInfo, base: str) -> list[str] | None:
    """The path below the root as parts, or None for what is hidden (.git, .DS_Store)."""
    parts = info.path[len(base) :].strip("/").split("/")
    return None if any(part.startswith(".") for part in parts) else parts


def list_images(source: ImageSource) -> ImageTree:
    """The root's images, labelled by class folder; one-line errors naming the root for a
    layout that gives nothing to train (no images, a single class, stray split folders)."""
    _, base = source.filesystem()
    entries = [(parts, info) for info in _entries(source)
               if (parts := _relative_parts(info, base)) is not None]  # fmt: skip
    top_folders = {parts[0] for parts, info in entries
                   if len(parts) > 1 or info.type == pafs.FileType.Directory}  # fmt: skip
    split_layout = "train" in top_folders
    if split_layout and top_folders - set(SPLIT_FOLDERS):
        others = ", ".join(sorted(top_folders - set(SPLIT_FOLDERS))[:5])
        raise InvalidDatasetError(
            f"{source.shown_root} holds train/ beside other folders ({others}): with split "
            "folders, every class folder goes inside train/ (and val/, test/)"
        )
    depth = 3 if split_layout else 2  # (split,) class, then the image (or subfolders)
    found: dict[str, dict[str, list[ImageFile]]] = {}
    for parts, info in entries:
        if not info.is_file or len(parts) < depth:
            continue
        if os.path.splitext(parts[-1])[1].lower() not in IMAGE_EXTENSIONS:
            continue
        part, label = (parts[0], parts[1]) if split_layout else ("all", parts[0])
        file = ImageFile("/".join(parts), info.size or 0, info.mtime_ns)
        found.setdefault(part, {}).setdefault(label, []).append(file)
    training = found.get("train" if split_layout else "all", {})
    if not training:
        raise InvalidDatasetError(
            f"no images in class folders under {source.shown_root}"
            + ("/train" if split_layout else "")
            + f" (the layout is {LAYOUT}; extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    classes = tuple(sorted(training))
    if len(classes) < 2:
        raise InvalidDatasetError(
            f"{source.shown_root} holds a single class ({classes[0]}): a classifier needs at "
            "least 2 class folders"
        )
    label_of = {name: label for label, name in enumerate(classes)}
    tree = ImageTree(classes)
    for part, by_class in sorted(found.items()):
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise InvalidDatasetError(
                f"{source.shown(part)} holds class folder(s) {', '.join(unknown[:5])} that "
                f"train/ lacks: every class needs training images"
            )
        labelled = [(file, label_of[name]) for name, files in by_class.items()
                    for file in files]  # fmt: skip
        tree.parts[part] = sorted(labelled, key=lambda item: item[0].path)
    return tree
