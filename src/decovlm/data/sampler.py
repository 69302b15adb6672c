"""Length-grouped and modality-aware samplers with a per-epoch seed (exact resumption).

`length`: transformers' `get_length_grouped_indices` (random megabatches, each sorted by
length) with a generator seeded from (seed, epoch), so a resumed run sees the same order.
`modality_length`: the same within image records and within text-only records separately, then
the megabatches of both are shuffled together, so a batch is all-image or all-text as far as
possible (LLaVA's `group_by_modality_length`): fewer padded tokens, and no batch where the
projector receives no gradient on one rank and a gradient on another.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


class GroupedSampler(Sampler[int]):
    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int = 0,
        has_image: list[bool] | None = None,
    ):
        self.lengths = list(lengths)
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self.has_image = has_image
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.seed * 1000003 + self.epoch)
        return g

    def __iter__(self):
        g = self._generator()
        if self.has_image is None or all(self.has_image) or not any(self.has_image):
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))
        groups = []
        for flag in (True, False):
            idx = [i for i, h in enumerate(self.has_image) if h == flag]
            order = get_length_grouped_indices(
                [self.lengths[i] for i in idx], self.batch_size, generator=g
            )
            ordered = [idx[i] for i in order]
            groups += [
                ordered[k : k + self.batch_size] for k in range(0, len(ordered), self.batch_size)
            ]
        perm = torch.randperm(len(groups), generator=g).tolist()
        return iter([i for p in perm for i in groups[p]])
