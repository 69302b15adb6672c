"""Version-guarded paths for the oldest supported libraries (see `make test-lowest`)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import TrainingArguments

from decovlm.train.runner import _checkpointing_arguments


@dataclass
class _Before523:  # transformers 5.20-5.22: only the old name
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: dict | None = None


@dataclass
class _From523(_Before523):  # 5.23+: the new name, the old one a deprecated alias
    activation_checkpointing: bool = False
    activation_checkpointing_kwargs: dict | None = None


def test_checkpointing_uses_the_name_the_installed_transformers_knows():
    assert _checkpointing_arguments(_Before523, True) == {
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
    }
    assert _checkpointing_arguments(_From523, False) == {
        "activation_checkpointing": False,
        "activation_checkpointing_kwargs": None,
    }
    # and the installed TrainingArguments accepts what we pass
    args = TrainingArguments(
        output_dir="unused", **_checkpointing_arguments(TrainingArguments, True)
    )
    name = next(iter(_checkpointing_arguments(TrainingArguments, True)))
    assert getattr(args, name) is True
