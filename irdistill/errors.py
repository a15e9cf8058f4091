"""Exceptions that irdistill raises for problems the user can fix.

The CLI turns each of them into one readable line and exit status 2; everything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "MissingDependencyError", "UnknownNameError"]


class InputError(ValueError):
    """Bad input: a malformed file, an unknown id, an empty text, a bad argument.

    The message names the file and line (or the id) and says what was expected.
    """


class UnknownNameError(InputError, KeyError):
    """A registry lookup for a name that does not exist; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(ImportError):
    """An optional dependency that was explicitly requested is not installed.

    The message carries the ``pip install`` command that fixes it.
    """


def location(path: object, line: int | None = None) -> str:
    """Format ``path:line`` for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
