"""The network as it is deployed: its inference form (every Tucker layer plain torch modules in
its fastest form, chosen by timing on the CPU at the deployment batch sizes), written as
TorchScript and ONNX, each evaluated on the validation split and timed against the dense
network in PyTorch, TorchScript and ONNX Runtime."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lightning_modules.evaluation import accuracy
from lightning_modules.inference import inference_form, torch_threads
from sweep.config import DeployConfig, SweepConfig
from sweep.export.latency import Latency, Runner, measure_latency
from sweep.export.onnx_file import OnnxNetwork, save_onnx
from sweep.export.torchscript import save_traced, trace
from sweep.seeding.deployment import device_name


@dataclass(frozen=True)
class Deployable:
    forms: dict[str, str]  # Tucker layer -> dense, folded or factorized
    torchscript_val_acc: float
    onnx_val_acc: float
    latency: Latency
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    """What the exported files are traced on, checked on and evaluated on."""

    example: Tensor  # a validation batch: traced and exported on
    check: Tensor  # other validation images: traced against eager
    loader: Iterable  # the validation split


def _fastest_form(network: nn.Module, shape: tuple[int, ...], deploy: DeployConfig) -> nn.Module:
    """The inference form chosen where the export runs, the CPU, with the deployment's threads
    and batch sizes: a layer is Tucker only where that is faster at every batch size."""
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(size, *shape, generator=generator) for size in deploy.batch_sizes]
    with torch_threads(deploy.threads):
        return inference_form(network, batches)


def _notes(config: SweepConfig) -> list[str]:
    deploy, notes = config.deploy, []
    if config.deploy_device != "cpu":  # deploy.device, or cuda by default for GPU trials
        notes.append(
            f"the deploy device is {config.deploy_device}; the export chose the forms and "
            "measured latency on this machine's CPU"
        )
    if deploy.dtype != "float32":
        notes.append(f"the exported files are float32 (deploy.dtype {deploy.dtype}); timed so")
    return notes


def _runners(dense: nn.Module, fast: nn.Module, files: dict[str, Path], example: Tensor,
             deploy: DeployConfig, folder: Path) -> dict[str, tuple[Runner, Runner]]:  # fmt: skip
    """(dense, compressed) per runtime: the dense network traced and exported like the
    compressed one (into `folder`), so that each ratio compares like with like."""
    dense = dense.eval()
    dense_onnx = folder / "dense.onnx"
    save_onnx(dense, example, dense_onnx)
    return {
        "pytorch": (dense, fast),
        "torchscript": (trace(dense, example), torch.jit.load(str(files["torchscript"]))),
        "onnxruntime": (
            OnnxNetwork(dense_onnx, deploy.threads),
            OnnxNetwork(files["onnx"], deploy.threads),
        ),
    }


def _latency(dense: nn.Module, fast: nn.Module, files: dict[str, Path], inputs: Inputs,
             deploy: DeployConfig) -> Latency:  # fmt: skip
    shape = tuple(inputs.example.shape[1:])
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-dense-") as folder:
        runners = _runners(dense, fast, files, inputs.example, deploy, Path(folder))
        by_batch = measure_latency(runners, shape, deploy.batch_sizes, deploy.threads)
    return Latency("cpu", device_name("cpu"), deploy.threads, "float32", by_batch)


def write_deployable(network: nn.Module, dense: nn.Module, inputs: Inputs,
                     config: SweepConfig, files: dict[str, Path]) -> Deployable:  # fmt: skip
    """The inference form of `network` written to files["torchscript"] and files["onnx"]; both
    files evaluated on the validation split and timed against `dense` (the sweep's dense
    architecture; its weights do not matter for speed) as `config.deploy` says."""
    deploy = config.deploy
    fast = _fastest_form(network, tuple(inputs.example.shape[1:]), deploy)
    save_traced(fast, inputs.example, inputs.check, files["torchscript"])
    save_onnx(fast, inputs.example, files["onnx"])
    scripted = torch.jit.load(str(files["torchscript"]), map_location="cpu")
    onnx_network = OnnxNetwork(files["onnx"], deploy.threads)
    return Deployable(
        forms=dict(fast.tucker_forms),
        torchscript_val_acc=accuracy(scripted, inputs.loader),
        onnx_val_acc=accuracy(onnx_network, inputs.loader),
        latency=_latency(dense, fast, files, inputs, deploy),
        notes=_notes(config),
    )
