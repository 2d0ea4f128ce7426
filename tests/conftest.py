"""Session fixtures shared by the test modules (pyproject puts the repo root on sys.path)."""

import pytest
import torch

from tests.fixtures.hub import offline_hub  # noqa: F401
from tests.fixtures.tiny_text import hf_text_cache  # noqa: F401


@pytest.fixture(autouse=True)
def _torch_thread_count_restored():
    """A test that changes torch's thread count (a scale actor built in-process sets its own) gives it back:
    later tests compare vectors bitwise with a server process or other threads running on the default count."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
