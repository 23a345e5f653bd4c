"""One table of bad input (issue 19): every case is one line on stderr, exit status 2, nothing
recorded, no code of the input's run, and no more memory than a refusal needs.

A case is (setup, command line, part of the expected line); the setup writes what the command
reads into the scratch folder. Add a row for each new kind of bad input. Each case is also
built to fail fast without its fix (an invalid key beside a duplicate one, say), so that a
regression fails the test instead of starting a sweep.
"""

from __future__ import annotations

import pickle
import resource
import struct
import sys
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.cli import run_cli, run_cli_in_process, write_config

Setup = Callable[[Path], None]
MARKER = "code-ran"  # what a case's command would create if the input's code ran
FACTORIES = "tbi_factories"  # modules the factory cases import (tests/support is not used:
BROKEN = "tbi_broken"  # these are written per case, so no other test can import them)


def sweep(overrides: dict, refused_later: bool = True) -> Setup:
    """sweep.yaml: the tests' small digits sweep (store and storage in the folder), overridden.
    `refused_later`: with a model the old code also refused, before Ray started; the schema
    checks come first, so only a case whose fix is missing gets that far (and fails at once,
    instead of starting a sweep that would fail minutes later, or never end)."""

    def setup(folder: Path) -> None:
        write_config(folder, {**overrides, **({"model.name": "vgg99"} if refused_later else {})})

    return setup


def sweep_text(text: str) -> Setup:
    """sweep.yaml with this text after a valid store and storage (the YAML cases)."""

    def setup(folder: Path) -> None:
        head = (
            f"tracking: {{uri: 'sqlite:///{folder / 'mlflow.db'}'}}\n"
            f"cluster: {{storage_path: '{folder / 'ray_results'}'}}\n"
        )
        (folder / "sweep.yaml").write_text(head + text)

    return setup


def factory(spec: str, options: dict | None = None) -> Setup:
    """A sweep whose model is `spec`, with the factory modules written beside it."""

    def setup(folder: Path) -> None:
        (folder / f"{FACTORIES}.py").write_text("def divide(**options):\n    return 1 / 0\n")
        (folder / f"{BROKEN}.py").write_text("1 / 0\n\ndef make(**options):\n    pass\n")
        resolved = {key: _in_folder(value, folder) for key, value in (options or {}).items()}
        write_config(folder, {"model": {"factory": spec, "options": resolved}})

    return setup


def _in_folder(value: str | list[str], folder: Path) -> str | list[str]:
    """An option with `{folder}` filled in (in a string, or in each string of a list)."""
    if isinstance(value, list):
        return [part.format(folder=folder) for part in value]
    return value.format(folder=folder)


def _npy(shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    """An .npy member whose header declares `shape`, followed by `payload` (maybe far less)."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def npz_declaring_petabytes(folder: Path) -> None:
    with zipfile.ZipFile(folder / "data.npz", "w") as archive:
        archive.writestr("x.npy", _npy((10**6, 1, 10**5, 10**5), "<f4", bytes(100)))
        archive.writestr("y.npy", _npy((3,), "<i8", bytes(24)))


def npz_with_huge_labels(folder: Path) -> None:
    images = np.random.default_rng(0).random((60, 8, 8), dtype=np.float32)
    np.savez(folder / "data.npz", x=images, y=(np.arange(60) % 2) * 10**12)


def pickled_checkpoint(overrides: dict | None = None) -> Setup:
    """A plain pickle (protocol 4) as weights: torch warns about it before refusing it."""

    def setup(folder: Path) -> None:
        (folder / "weights.pkl").write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))
        if overrides is not None:
            write_config(folder, overrides)

    return setup


def image_folder(classes: dict[str, list[str]], corrupt: tuple[str, ...] = ()) -> Setup:
    """images/<class>/<name> as 4x4 PNGs (`corrupt` ones as text), and a sweep on them."""

    def setup(folder: Path) -> None:
        for name, files in classes.items():
            (folder / "images" / name).mkdir(parents=True)
            for file in files:
                Image.new("L", (4, 4), 128).save(folder / "images" / name / file)
        for path in corrupt:
            (folder / "images" / path).write_text("not a PNG")
        options = {"root": str(folder / "images"), "image_size": 8}
        sweep({"data": {"name": "image_folder", "options": options}})(folder)

    return setup


def nothing(folder: Path) -> None:
    """The command line holds all of the bad input."""


class InNewProcess(list):
    """A command line to run as the console script does, in a process of its own: in this one,
    pytest records the libraries' warnings, so a case about what they print (torch's, before
    an error) shows only there. Seconds each (imports): for those cases only."""


# 6 levels of 9 aliases each: over 9**6 values from 6 lines (the old code printed them all).
ALIAS_BOMB = "model:\n  options:\n    l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 6)
)
LAUNCH = ["launch", "sweep.yaml"]
TRAIN_NPZ = ["train", "--data", "npz", "--data-path", "data.npz", "--epochs", "1"]
LONG_NAME = "a" * 300

CASES = [
    # Numbers out of range: a traceback mid-sweep (numpy's seed, the sampler's islice, a
    # diverged loss) before the schema bounded them.
    (sweep({"training.seed": -1}), LAUNCH,
     "training.seed: Input should be greater than or equal to 0"),
    (sweep({"training.seed": 2**70}), LAUNCH,
     "training.seed: Input should be less than or equal to 4294967295"),
    (sweep({"search.seed": -1}), LAUNCH, "search.seed: Input should be greater than or equal to 0"),
    (sweep({"training.batch_size": 10**30}), LAUNCH,
     "training.batch_size: Input should be less than or equal to"),
    (sweep({"training.weight_decay": float("inf")}), LAUNCH,
     "training.weight_decay: Input should be a finite number"),
    (sweep({"search.lr": {"low": 0.01, "high": float("nan")}}), LAUNCH,
     "search.lr.high: Input should be a finite number"),
    (sweep({"decomposition.seed_epochs": 10**9}), LAUNCH,
     "decomposition.seed_epochs: Input should be less than or equal to"),
    # A 300-character name failed as a folder name once the sweep's MLflow run existed.
    (sweep({"deploy.device": "cuda"}), LAUNCH, "deploy.device: cuda needs trials on GPUs"),
    (sweep({"deploy.batch_sizes": []}), LAUNCH, "deploy.batch_sizes: List should have at least 1"),
    (sweep({"deploy.threads": 0}), LAUNCH, "deploy.threads: Input should be greater than or equal"),
    (sweep({"decomposition.budget_metric": "joules"}), LAUNCH, "decomposition.budget_metric:"),
    (sweep({"name": LONG_NAME}), LAUNCH, "name: String should have at most 100 characters"),
    (sweep({}), [*LAUNCH, "--name", LONG_NAME], "--name: String should have at most 100"),
    (nothing, ["launch", "--resume", LONG_NAME], "is not a sweep name (up to 100 letters"),
    # A built-in model's options: a negative width was a traceback, a zero width five lines.
    (sweep({"model.options": {"width": -1}}, refused_later=False), LAUNCH,
     "for model 'vgg_small': width must be a whole number of at least 1, got -1"),
    (sweep({"model.options": {"width": 0}}, refused_later=False), LAUNCH,
     "width must be a whole number of at least 1, got 0"),
    (sweep({"model.options": {"width": 10**7}}, refused_later=False), LAUNCH,
     "for model 'vgg_small': its weights alone need"),
    (sweep({"data.options": {"val_fraction": "half"}}, refused_later=False), LAUNCH,
     "data.options {'val_fraction': 'half'}: "),
    # Models from packages (issue 21): a hub reference would have timm read the hub; published
    # weights are for torchvision and timm models. (Without the package: test_own_model.py.)
    (sweep({"model": {"timm": "hf-hub:timm/resnet18.a1_in1k"}}), LAUNCH,
     "model.timm: a model name of timm.list_models() (a .tag allowed), not a hub or folder"),
    (sweep({"model": {"name": "vgg_small", "pretrained": True}}), LAUNCH,
     "only a torchvision or timm model has published weights (model.pretrained)"),
    # The user's own code: what it raises is named; what cannot build a model is not called.
    (factory(f"{BROKEN}:make"), LAUNCH,
     f"model factory '{BROKEN}:make': importing {BROKEN} raised ZeroDivisionError: division"),
    (factory(f"{FACTORIES}:divide"), LAUNCH,
     f"model factory '{FACTORIES}:divide' raised ZeroDivisionError: division by zero"),
    (factory("os:system", {"command": f"touch {{folder}}/{MARKER}"}), LAUNCH,
     "model factory 'os:system' is a built-in function"),
    (factory("subprocess:Popen", {"args": ["touch", f"{{folder}}/{MARKER}"]}), LAUNCH,
     "model factory 'subprocess:Popen' is the class Popen, not an nn.Module"),
    # YAML: duplicates were kept silently (the last won), deep nesting overflowed the stack, an
    # alias bomb gave a 58-million-character line. Each also holds a mistake the old code
    # refused at once (vgg99, colour), so that without the fix it fails instead of running.
    (sweep_text("model: {name: vgg_small}\nmodel: {name: vgg99}\n"), LAUNCH,
     "sweep.yaml: duplicate key 'model' at line 4 (first at line 3)"),
    (sweep_text("model:\n  options:\n    x: " + "[" * 5000 + "]" * 5000 + "\n"), LAUNCH,
     "sweep.yaml: nested more than 50 levels deep at line"),
    (sweep_text(ALIAS_BOMB), LAUNCH,
     "sweep.yaml: holds more than 100,000 values once its aliases are expanded"),
    (sweep_text("model:\n  options:\n    x: &loop [1, *loop]\n"), LAUNCH,
     "sweep.yaml: the value at line 5 holds an alias of itself"),
    (sweep_text("colour: blue\n" + "#" * 1_100_000 + "\n"), LAUNCH,
     "bytes is not a config (at most 1,000,000 bytes)"),
    # A plain pickle as weights: torch's warning about its protocol came before the error.
    (pickled_checkpoint({"model.checkpoint": "weights.pkl"}), InNewProcess(LAUNCH),
     "weights.pkl is not a PyTorch weights file"),
    (pickled_checkpoint(), InNewProcess(["seed", "--checkpoint", "weights.pkl"]),
     "weights.pkl is not a PyTorch checkpoint"),
    # An npz's headers and labels decide what loading it allocates.
    (npz_declaring_petabytes, TRAIN_NPZ,
     "data.npz: array x declares shape (1000000, 1, 100000, 100000) of float32"),
    (npz_with_huge_labels, TRAIN_NPZ,
     "labels y go up to 1,000,000,000,000: class indices must be below 100,000"),
    # An image folder (issue 21): no images, one class, a file that is not an image.
    (image_folder({"cats": []}), LAUNCH, "no images in class folders under "),
    (image_folder({"cats": ["a.png", "b.png"]}), LAUNCH, "/images holds a single class (cats)"),
    (image_folder({"cats": ["a.png", "b.png"], "dogs": ["c.png", "d.png"]},
                  corrupt=("dogs/d.png",)),
     LAUNCH, "/images/dogs/d.png: not an image file Pillow can read"),
]  # fmt: skip

# What a refusal may allocate beyond what the test process holds: without the fixes, a label of
# 10**12 built a set of 10**12 numbers and a width of 10**7 initialised terabytes, and the kernel
# killed the process (the whole test run) instead of failing one case.
HEADROOM_BYTES = 6 * 2**30


@contextmanager
def memory_cap(headroom: int):
    """The process's address space limited to what it maps now plus `headroom` (Linux)."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        yield
        return
    mapped = int(statm.read_text().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize(("setup", "args", "message"), CASES)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capfd, monkeypatch, setup, args, message):
    monkeypatch.syspath_prepend(str(tmp_path))  # the factory cases' modules
    monkeypatch.setenv("TUCKER_SWEEP_DATA", str(tmp_path / "data"))  # data modules' caches
    for name in (FACTORIES, BROKEN):
        monkeypatch.delitem(sys.modules, name, raising=False)
    setup(tmp_path)
    if isinstance(args, InNewProcess):
        result = run_cli(*args, cwd=tmp_path, timeout=300)
    else:
        with memory_cap(HEADROOM_BYTES):
            result = run_cli_in_process(*args, cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert len(lines[0]) < 600, lines[0][:600]  # a line, whatever the input echoes
    assert not (tmp_path / MARKER).exists()  # the input's code did not run
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded, nothing left RUNNING
    assert not (tmp_path / "ray_results").exists()
