"""Shared test set-up: single-threaded torch (CI has 2 cores) and quiet transformers warnings."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture
def red_image():
    from PIL import Image

    return Image.new("RGB", (40, 30), (220, 20, 20))
