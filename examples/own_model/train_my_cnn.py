"""Train MyCNN as a user would, and save a plain state_dict for tucker-sweep to compress.

    PYTHONPATH=examples/own_model python examples/own_model/train_my_cnn.py

The data: the MNIST test set if ../shared/data/mnist-t10k is there (10,000 28x28 images),
else scikit-learn's 8x8 digits, written to examples/own_model/data.npz so that the sweep reads
the same images. The model trains on the training split of tucker-sweep's own split of that
file (same seed), so the sweep's validation and test images stay unseen, as they would be
with a user's own held-out data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # my_cnn, as the sweep finds it through PYTHONPATH
sys.path.insert(0, str(HERE.parents[1]))  # the repository, when run from a checkout

from my_cnn import build  # noqa: E402

from lightning_modules.data import make_datamodule, read_mnist_idx  # noqa: E402
from lightning_modules.evaluation import accuracy  # noqa: E402

MNIST = HERE.parents[2] / "shared" / "data" / "mnist-t10k"


def write_data(path: Path, source: str) -> str:
    """The images and labels as an .npz; returns what they are."""
    if source in ("auto", "mnist") and (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        images, labels = read_mnist_idx(MNIST, "test")
        np.savez_compressed(path, x=images, y=labels)
        return f"MNIST test set ({len(labels)} images, 28x28)"
    if source == "mnist":
        raise SystemExit(f"no MNIST files in {MNIST}")
    digits = load_digits()
    np.savez_compressed(path, x=(digits.images / 16.0).astype(np.float32), y=digits.target)
    return f"scikit-learn digits ({len(digits.target)} images, 8x8)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("auto", "mnist", "digits"), default="auto")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "my_cnn.pt")
    parser.add_argument("--data-out", type=Path, default=HERE / "data.npz")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print("data:", write_data(args.data_out, args.data))
    # The split tucker-sweep makes of the file (data.name npz, training.seed 0).
    datamodule = make_datamodule("npz", seed=0, batch_size=64, path=str(args.data_out))
    datamodule.setup("fit")
    model = build(in_channels=datamodule.input_shape[0], num_classes=datamodule.num_classes,
                  width=args.width)  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for images, labels in datamodule.train_dataloader():
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
        schedule.step()
        val = accuracy(model, datamodule.val_dataloader())
        print(f"epoch {epoch}: val acc {val:.4f}")
    torch.save(model.state_dict(), args.out)
    print(f"saved the state_dict to {args.out}")


if __name__ == "__main__":
    main()
