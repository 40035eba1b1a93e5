"""The segmentation network and its LightningModule."""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch

from cocoseg.shared.confusion import confusion_matrix
from cocoseg.shared.metrics import scores
from cocoseg.training.losses import SegmentationLoss
from cocoseg.training.network import build_model
from cocoseg.training.transforms import normalize
from cocoseg.training.variants import Variant


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up from 10% to 100%, then poly (power 0.9) or cosine decay to 0."""
    if step < warmup_steps:
        return 0.1 + 0.9 * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return (1 - progress) ** 0.9


class SegmentationModule(pl.LightningModule):
    """One variant's network, loss, optimiser and schedule; validation mIoU over the whole split."""

    def __init__(self, variant: Variant, num_classes: int, class_weights: list[float] | None = None):
        super().__init__()
        self.save_hyperparameters({"variant": variant.to_dict(), "num_classes": num_classes})
        self.variant, self.num_classes = variant, num_classes
        self.model = build_model(variant.architecture, variant.encoder, variant.encoder_weights, num_classes)
        if variant.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = SegmentationLoss(variant.loss, variant.loss_weights, class_weights)
        self.register_buffer("val_confusion", torch.zeros(num_classes, num_classes, dtype=torch.long),
                             persistent=False)
        self.history: list[dict] = []  # one row per epoch, kept in checkpoints for resumed runs
        self._train_loss_sum = self._train_batches = 0.0
        self._epoch_start = time.perf_counter()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self.variant.channels_last else torch.contiguous_format
        return self.model(images.contiguous(memory_format=memory_format))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 from the loader -> normalised float images and long masks, on the device."""
        images, masks = batch
        return normalize(images), masks.long()

    def training_step(self, batch, batch_idx):
        images, masks = batch
        loss = self.criterion(self(images), masks)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(images))
        self._train_loss_sum += float(loss.detach())
        self._train_batches += 1
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._freeze_for_epoch()

    def on_train_start(self) -> None:
        """A fit resumed inside an epoch gets no `on_train_epoch_start`: the encoder is frozen
        (or not) here too."""
        self._freeze_for_epoch()

    def _freeze_for_epoch(self) -> None:
        self.freeze_encoder(self.current_epoch < self.variant.freeze_encoder_epochs)

    def freeze_encoder(self, frozen: bool) -> None:
        """While frozen, the decoder trains alone: encoder weights get no gradient (AdamW then
        leaves them, weight decay included) and its BatchNorm statistics stay as they are."""
        for parameter in self.model.encoder.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            self.model.encoder.eval()

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.zero_()

    def validation_step(self, batch, batch_idx):
        images, masks = batch
        predictions = self(images).argmax(dim=1)
        self.val_confusion += confusion_matrix(masks, predictions, self.num_classes)

    def on_validation_epoch_end(self) -> None:
        confusion = self.val_confusion
        if self.trainer.world_size > 1:
            confusion = self.trainer.strategy.reduce(confusion, reduce_op="sum")
        result = scores(confusion)
        # Logged once per epoch from counts summed over the whole split: never a batch average.
        self.log_dict({"val_miou": result["miou"], "val_mdice": result["mdice"],
                       "val_pixel_accuracy": result["pixel_accuracy"]}, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.history.append({
                "epoch": self.current_epoch + 1,
                "train_loss": self._train_loss_sum / max(1, self._train_batches),
                "val_miou": result["miou"], "val_mdice": result["mdice"],
                "val_pixel_accuracy": result["pixel_accuracy"],
                "seconds": time.perf_counter() - self._epoch_start,
            })
        self._train_loss_sum = self._train_batches = 0.0

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.variant.lr, weight_decay=self.variant.weight_decay)
        # Counted by the data module, not with `estimated_stepping_batches`, which builds the
        # training loader before a resumed fit's position is restored (Lightning 2.6).
        steps_per_epoch = max(1, self.trainer.datamodule.batches_per_epoch())
        max_steps = self.trainer.max_steps
        total = max_steps if max_steps != -1 else steps_per_epoch * self.trainer.max_epochs
        warmup = int(self.variant.warmup_epochs * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup, self.variant.schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["cocoseg_history"] = self.history
        # the epoch in progress, for a checkpoint written inside it
        checkpoint["cocoseg_epoch_so_far"] = {"train_loss_sum": self._train_loss_sum, "batches": self._train_batches,
                                              "seconds": time.perf_counter() - self._epoch_start}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = checkpoint.get("cocoseg_history", [])
        so_far = checkpoint.get("cocoseg_epoch_so_far", {"train_loss_sum": 0.0, "batches": 0, "seconds": 0.0})
        self._train_loss_sum, self._train_batches = so_far["train_loss_sum"], so_far["batches"]
        self._epoch_start = time.perf_counter() - so_far["seconds"]
