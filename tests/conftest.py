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


def pytest_addoption(parser):
    # `pytest --device cuda` runs the device-aware tests (the `device` fixture) on a GPU in bf16;
    # scripts/gpu_check.sh uses it. The default keeps the suite on CPU in float32.
    parser.addoption("--device", default="cpu", help="device of the device-aware tests (cpu, cuda)")


@pytest.fixture(scope="session")
def device(request):
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda but no CUDA device")
    return dev


@pytest.fixture(scope="session")
def dtype(device):
    """bf16 on a GPU (the training precision of the recipe), float32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32
