"""Optional and version-sensitive dependencies, checked before a command starts work.

A command that would fail an hour in (the trainer needs ``accelerate``, a GGUF teacher needs
``gguf``, ``--device cuda`` needs GPU faiss) calls :func:`require` first, so a missing package is
reported at once, with the ``pip install`` line that fixes it, before any data is read.

Checks look packages up with :mod:`importlib.metadata` and ``importlib.util.find_spec``; nothing
heavy is imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from irdistill.errors import MissingDependencyError

__all__ = ["Requirement", "REQUIREMENTS", "missing", "require"]


@dataclass(frozen=True)
class Requirement:
    """One package: its import name, its distribution name and the lowest version that works."""

    module: str
    distribution: str
    minimum: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.distribution}>={self.minimum}" if self.minimum else self.distribution

    def problem(self) -> str | None:
        """``None`` when installed at a good version, else what is wrong, in a few words."""
        if importlib.util.find_spec(self.module) is None:
            return "not installed"
        if self.minimum is None:
            return None
        try:
            installed = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None  # importable without metadata (a source checkout): trust it
        from packaging.version import InvalidVersion, Version

        try:
            if Version(installed) < Version(self.minimum):
                return f"{installed} installed"
        except InvalidVersion:
            return None
        return None


REQUIREMENTS: dict[str, Requirement] = {
    # the Hugging Face Trainer (under every sentence-transformers trainer) refuses to start without it
    "accelerate": Requirement("accelerate", "accelerate", "1.1.0"),
    "datasets": Requirement("datasets", "datasets", "2.16"),
    "gguf": Requirement("gguf", "gguf", "0.10"),
    "faiss": Requirement("faiss", "faiss-cpu"),
    "bm25s": Requirement("bm25s", "bm25s"),
}

TRAINING = ("accelerate", "datasets")
"""What every training command (student, sparse student, cross-encoder teacher) needs."""


def missing(*names: str) -> list[str]:
    """``"spec (problem)"`` for each named requirement that is not satisfied."""
    out = []
    for name in names:
        requirement = REQUIREMENTS[name]
        problem = requirement.problem()
        if problem:
            out.append(f"{requirement.spec} ({problem})")
    return out


def require(*names: str, purpose: str) -> None:
    """Raise :class:`MissingDependencyError` naming every unsatisfied requirement at once.

    Example:
        >>> require("accelerate", "datasets", purpose="training")  # doctest: +SKIP
        MissingDependencyError: training needs accelerate>=1.1.0 (not installed):
        pip install "accelerate>=1.1.0"
    """
    problems = missing(*names)
    if problems:
        specs = " ".join(f'"{p.split(" (")[0]}"' for p in problems)
        raise MissingDependencyError(f"{purpose} needs {', '.join(problems)}: pip install {specs}")
