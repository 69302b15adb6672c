"""Two-stage training (align -> finetune, or DeCo's one-stage no-align) on the HF Trainer.

from decovlm.train import load_config, train
result = train(load_config("tiny_align", ["data.path=data.json"]), callbacks=[...])
"""

from decovlm.train.config import TrainConfig, list_presets, load_config
from decovlm.train.runner import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "list_presets", "load_config", "train"]
