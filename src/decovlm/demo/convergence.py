"""Accuracy against training step: held-out questions scored along the finetune stage (convergence).

DeCo's "faster convergence" claim is about how quickly accuracy rises, so the demo evaluates the
model before the first step and every `finetune_steps // curve_points` steps on one fixed set of
held-out questions, the same for every projector: `curve_questions` of them, spread evenly over the
task categories (a question file of its own, `demo.swapped.write_curve_questions`). Each point keeps the
per-question outcomes, so "faster" can be measured as the steps needed to reach a fixed fraction
of the non-compressive model's final score (`demo.stats.steps_to_reach`), with a bootstrap
interval (`demo.claims`). Points are
appended to `curve.jsonl`, so a resumed run keeps the ones it had.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from decovlm.utils.io import append_jsonl, read_jsonl


class CurveCallback(TrainerCallback):
    def __init__(self, out_dir: Path, data_dir: Path, budget, device: str) -> None:
        self.out_dir = Path(out_dir)
        self.data_dir = Path(data_dir)
        self.budget = budget
        self.every = max(1, budget.finetune_steps // max(1, budget.curve_points))
        self.points = read_jsonl(self.out_dir / "curve.jsonl")
        self.seconds = 0.0  # evaluation time, subtracted from the training time

    def _evaluate(self, model, processor, step: int) -> None:
        from decovlm.demo.stats import question_outcomes
        from decovlm.eval import decovlm_generate_fn, evaluate_synthetic

        if any(p["step"] == step for p in self.points):
            return
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        batch = self.budget.eval_batch_size
        generate = decovlm_generate_fn(
            model, processor, batch_size=batch, max_new_tokens=self.budget.max_new_tokens
        )
        answers = self.out_dir / f"step{step:05d}"
        scores = evaluate_synthetic(generate, self.data_dir, answers, batch_size=batch)
        model.train(was_training)
        point = {
            "step": step,
            "scores": scores,
            "outcomes": question_outcomes(self.data_dir, answers),
        }
        append_jsonl(self.out_dir / "curve.jsonl", point)
        self.points.append(point)
        self.seconds += time.perf_counter() - start

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step == 0:
            self._evaluate(model, processing_class, 0)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._evaluate(model, processing_class, state.global_step)
