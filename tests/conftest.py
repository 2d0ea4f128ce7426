"""Session fixtures shared by the test modules (pyproject puts the repo root on sys.path)."""

from tests.fixtures.hub import offline_hub  # noqa: F401
from tests.fixtures.tiny_text import hf_text_cache  # noqa: F401
