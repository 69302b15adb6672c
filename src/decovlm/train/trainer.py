"""The HF Trainer with decovlm's samplers (length / modality grouped from cheap length estimates).

The stock Trainer infers lengths by loading every item (every image) before the first step; the
dataset already carries estimates, so the sampler is built from those instead. Checkpoint
completion markers and rotation are a callback (`callbacks.CheckpointMarker`, a public hook).
"""

from __future__ import annotations

from transformers import Trainer

from decovlm.data.sampler import GroupedSampler


class DecoTrainer(Trainer):
    def __init__(self, *args, sampler_kind: str = "random", **kwargs):
        self.sampler_kind = sampler_kind
        super().__init__(*args, **kwargs)

    # The Trainer has no public hook for its training sampler. `_get_train_sampler(train_dataset)`
    # is read from transformers 5.25.0 (the latest release) and is the same in 5.20.0 (the lowest
    # supported); `make test-lowest` runs the tests that train with it (tests/test_train_stages.py).
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
