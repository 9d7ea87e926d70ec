"""Serving tests: one torch thread (the CI machine is small and shared), tiny models only."""

from __future__ import annotations

import pytest
import torch

from softprompt.backbones import load_backbone

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bert():
    return load_backbone("tiny-bert")


@pytest.fixture(scope="session")
def tiny_gpt2():
    return load_backbone("tiny-gpt2")
