"""One vocabulary of errors for the whole zoo.

Every error the zoo raises on purpose is a :class:`ZooError`, so callers can catch the
family with one ``except``. Messages name the thing at fault and the limit it broke, and
say what to do next where there is something to do.
"""

from __future__ import annotations

from collections.abc import Iterable


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class UnknownModelError(ZooError, KeyError):
    """A model name that no card registers."""

    def __init__(self, name: str, suggestions: Iterable[str] = (), hint: str | None = None):
        self.name = name
        self.suggestions = list(suggestions)
        self.hint = hint
        msg = f"unknown model {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        if hint:
            msg += f" ({hint})"
        elif not self.suggestions:
            msg += " (`zoo list` shows the registered names)"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class CardError(ZooError, ValueError):
    """A model card that does not validate (unknown field, wrong type, bad value)."""


class RegistryError(ZooError):
    """A registration that would overwrite an existing card or adapter."""


class InvalidInputError(ZooError, ValueError):
    """An input item that cannot be embedded.

    Attributes:
        index: position of the offending item in the caller's list, or None for the call.
    """

    def __init__(self, message: str, *, index: int | None = None):
        self.index = index
        prefix = f"input[{index}]: " if index is not None else ""
        super().__init__(prefix + message)


class InputTooLargeError(InvalidInputError):
    """An input item over a size limit (tokens, characters, bytes, pixels, samples, points)."""

    def __init__(self, message: str, *, index: int | None = None, limit: int | None = None):
        self.limit = limit
        super().__init__(message, index=index)


class SpaceMismatchError(ZooError, ValueError):
    """Two sets of vectors from different embedding spaces were compared."""


class WeightsUnavailableError(ZooError):
    """No source could provide the weight files; the message says how to get them."""


class IntegrityError(ZooError):
    """A model file that is missing, cut short or not the one its card pins (sha256, size, contents).

    Attributes:
        path: the file at fault, relative to its folder, where one file is.
    """

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(message)


class UnsafeModelFileError(ZooError):
    """A weight file in a format the card does not allow (pickle), or remote code without consent."""


class MissingDependencyError(ZooError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package = package
        self.extra = extra
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package} is needed{what} but not installed; install it with: pip install 'embedding-zoo[{extra}]'"
        )


def require(module: str, *, extra: str, purpose: str = ""):
    """Import ``module`` or raise MissingDependencyError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
