"""Runnable demos of embedding-zoo (``python -m demos.app``)."""
