"""Shared by the runner tests: tiny image files, jsonl writing and a rule-based fake model."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def png(path: Path, size=(40, 30), colour="red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


class FakeModel:
    """generate_fn that answers by the first rule whose key occurs in the prompt; records every call."""

    def __init__(self, rules: dict[str, str], default: str = "no idea"):
        self.rules, self.default, self.calls = rules, default, []

    def __call__(self, batch):
        self.calls.append([(img is not None, prompt) for img, prompt in batch])
        return [
            next((v for k, v in self.rules.items() if k in prompt), self.default)
            for _, prompt in batch
        ]

    @property
    def n_prompts(self) -> int:
        return sum(len(c) for c in self.calls)
