"""The HF Trainer with decovlm's samplers (length / modality grouped from cheap length estimates)
and crash-safe checkpoint rotation.

The stock Trainer infers lengths by loading every item (every image) before the first step; the
dataset already carries estimates, so the sampler is built from those instead.

The stock Trainer also rotates checkpoints (`save_total_limit`) right after writing a new one,
before any callback can mark it complete: a crash there lost the last complete checkpoint. Here a
save is written with rotation off, marked `COMPLETE`, and only then rotated (`callbacks.py`).
"""

from __future__ import annotations

from transformers import Trainer

from decovlm.data.sampler import GroupedSampler


class DecoTrainer(Trainer):
    def __init__(self, *args, sampler_kind: str = "random", **kwargs):
        self.sampler_kind = sampler_kind
        super().__init__(*args, **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        from pathlib import Path

        from decovlm.train.callbacks import mark_complete, rotate_checkpoints

        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # the stock rotation runs before the marker
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = Path(self._get_output_dir(trial=trial))
        step = self.state.global_step
        mark_complete(run_dir / f"checkpoint-{step}", step, self.args.should_save)
        if self.args.should_save:
            rotate_checkpoints(run_dir, limit, keep=self.state.best_model_checkpoint)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.sampler_kind == "random" or not hasattr(dataset, "lengths"):
            return super()._get_train_sampler(train_dataset)
        a = self.args
        # Group at the level of one optimizer step over all ranks: every rank draws from the
        # same ordering and accelerate shards it batch by batch.
        batch = a.per_device_train_batch_size * a.gradient_accumulation_steps * max(1, a.world_size)
        return GroupedSampler(
            dataset.lengths,
            batch,
            seed=a.data_seed if a.data_seed is not None else a.seed,
            has_image=dataset.has_image if self.sampler_kind == "modality_length" else None,
        )
