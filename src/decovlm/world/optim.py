"""The backbones' shared pretraining loop: AdamW, linear warmup then cosine decay, clipped steps.

The world's vision encoder and LM are pretrained the same way; only what one step computes (its
loss) differs, so each passes a `step_loss` closure and this module owns the optimisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


def pretrain(
    params: Iterable[nn.Parameter],
    step_loss: Callable[[], torch.Tensor],
    steps: int,
    lr: float,
    desc: str,
    progress: bool = True,
) -> float:
    """Run `steps` optimiser steps on `step_loss()`; returns the last step's loss."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    # The warmup ramp multiplies a cosine over the whole run (transformers'
    # get_cosine_schedule_with_warmup decays over the steps after warmup instead); the measured
    # backbones in backbones.py were trained with this one.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    loss_value = float("nan")
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.3f}")
    return loss_value
