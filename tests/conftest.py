"""Session fixtures shared by the test modules (pyproject puts the repo root on sys.path)."""

from tests.fixtures.tiny_text import hf_text_cache  # noqa: F401
