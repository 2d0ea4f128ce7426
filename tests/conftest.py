"""Session fixtures shared by the test modules (pyproject puts the repo root on sys.path)."""

import pytest
import torch

from tests.fixtures.hub import offline_hub  # noqa: F401
from tests.fixtures.tiny_text import hf_text_cache  # noqa: F401

TORCH_THREADS = torch.get_num_threads()  # the process's default, before any test


@pytest.fixture(autouse=True)
def _torch_thread_count_restored():
    """After each test torch runs on its default thread count again: a scale actor built in-process (in a test
    or a module fixture) sets its own, and later tests compare vectors bitwise with a server process or with
    calls from other threads, which run on the default count."""
    yield
    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
