"""Lightning on Ray Train's workers: the Distribution that makes every fit of a worker one rank
of a DDP run, through Ray's Lightning utilities (ray/train/lightning/_lightning_utils.py:
RayDDPStrategy, RayLightningEnvironment, prepare_trainer). Ray Train has already joined the
workers' process group (gloo on CPUs, NCCL on GPUs) when the training function starts.

Two changes to RayDDPStrategy keep the per-epoch figures those of one-device training:

- Evaluation loaders give each example to exactly one rank. Lightning's DistributedSampler pads
  a split whose size the ranks do not divide by repeating its first examples, which would then
  count twice in val_acc (lightning/pytorch/trainer/connectors/data_connector.py; Lightning
  itself samples unrepeated only to predict). Ranks may then differ by one batch, which DDP
  allows outside training: it syncs buffers on the first evaluation forward only
  (UnrepeatedDistributedSampler's note, lightning/pytorch/overrides/distributed.py).
- In-memory splits are batched through DataLoaders, which Lightning shards, rather than as
  DeviceBatches on the GPU, which it cannot: every rank would train on every example.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer
from torch.utils.data import DataLoader

from lightning_modules.trainer import Distribution


def each_example_once(loader: DataLoader, ranks: int, rank: int) -> DataLoader:
    """`loader` over this rank's share of its data set, every example on exactly one rank."""
    sampler = UnrepeatedDistributedSampler(
        loader.dataset, num_replicas=ranks, rank=rank, shuffle=False
    )
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers else None,
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers,
    )


class ExactEvaluationDDP(RayDDPStrategy):
    """RayDDPStrategy whose evaluation loaders see each example once (see the module's doc)."""

    def setup(self, trainer: pl.Trainer) -> None:
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "batch_on_device"):
            datamodule.batch_on_device = False  # before any loader is requested
        super().setup(trainer)

    def process_dataloader(self, dataloader: object) -> object:
        dataloader = super().process_dataloader(dataloader)
        trainer = self.lightning_module.trainer
        if trainer.training or not isinstance(dataloader, DataLoader):
            return dataloader
        return each_example_once(dataloader, self.world_size, self.global_rank)


RAY_TRAIN_DDP = Distribution(
    strategy=ExactEvaluationDDP,
    plugins=lambda: [RayLightningEnvironment()],
    prepare=prepare_trainer,
)
