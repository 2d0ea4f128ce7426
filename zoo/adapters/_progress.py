"""The per-call context an adapter's ``_encode`` gets, and the progress bar it carries.

Owns ``EmbedContext`` (one call's settings and its ``info``), the unit each modality's bar counts in
(``_UNITS``), and ``progress_bar``, which opens a bar through ``_new_bar`` while ``progress`` is on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

_UNITS = {"text": "text", "code": "snippet", "image": "image", "audio": "clip", "points": "cloud"}


@dataclass
class EmbedContext:
    """Per-call settings handed to ``_encode``."""

    batch_size: int | None = None
    progress: bool = False
    truncate: bool = True
    instruction: str | None = None
    prompt_name: str | None = None
    prompt: str | None = None
    low_memory: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    bar: Any = None  # the call's progress bar (tqdm) while ``progress`` is on; see advance()

    def advance(self, n: int) -> None:
        """Count ``n`` more items done on the call's progress bar (nothing when there is none). Adapters call it
        per batch; the bar is completed when ``_encode`` returns, so one that never calls it still shows one."""
        if self.bar is not None:
            self.bar.update(n)


def _new_bar(total: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


@contextlib.contextmanager
def progress_bar(ctx: EmbedContext, total: int, desc: str, unit: str):
    """A tqdm bar over ``total`` items in ``ctx.bar`` while ``ctx.progress`` is on (on stderr; a plain line per
    update when stderr is not a terminal is tqdm's own behaviour), filled up and closed on the way out."""
    if not ctx.progress or total <= 0:
        yield
        return
    ctx.bar = _new_bar(total=total, desc=desc, unit=unit)
    try:
        yield
        ctx.bar.update(total - ctx.bar.n)
    finally:
        ctx.bar.close()
        ctx.bar = None

