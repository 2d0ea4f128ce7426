"""What the browser sees when something goes wrong: refusals without server paths or tracebacks, the Markdown
status of an action, and :func:`_guarded`, the wrapper of every event handler."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

log = logging.getLogger(__name__)


_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def _without_paths(message: str) -> str:
    """A message for the browser: absolute server paths shortened to their file names."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a folder)", message)


def _user_message(exc: Exception) -> str:
    """The text of a refusal for the browser: no server path, no traceback."""
    if isinstance(exc, OSError) and exc.strerror:  # its str() names the full path
        name = Path(exc.filename).name if exc.filename else ""
        return f"{exc.strerror}: {name}" if name else exc.strerror
    return _without_paths(str(exc)) or type(exc).__name__


def _status(message: str) -> str:
    """A message for an action's Markdown status."""
    return f"**Error:** {message}"


def _guarded(fn: Callable | None = None, *, on_error: Callable[[str], Any] | None = None) -> Callable:
    """Turn the zoo's and the app's refusals into a message without server paths; anything else becomes a short
    generic message (its traceback goes to the server log). With ``on_error`` the handler returns
    ``on_error(message)`` (its outputs, the message in the action's Markdown status, so it stays on the page);
    without, the message is raised as gr.Error."""
    import functools

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            import gradio as gr

            try:
                return fn(*args, **kwargs)
            except gr.Error as exc:
                if on_error is None:
                    raise
                message = _without_paths(str(exc.message))
            except (ZooError, ValueError, OSError) as exc:
                message = _user_message(exc)
            except Exception as exc:  # never leak a traceback to the page; the next request still works
                log.exception("demo: %s failed", fn.__name__)
                message = f"internal error ({type(exc).__name__}); see the server log"
            if on_error is None:
                raise gr.Error(message)
            return on_error(message)

        return wrapper

    return decorate if fn is None else decorate(fn)
