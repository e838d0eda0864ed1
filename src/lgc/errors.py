"""The exception hierarchy of lgc (API.md §8).

Every mistake a user can make surfaces as an `LgcError` subclass whose message names the op or
layer, the argument, and the shapes involved. Internal invariants may use `assert`; user input
never reaches one.
"""

from __future__ import annotations


class LgcError(Exception):
    """Base class of every error lgc raises for a user's mistake."""


class GraphError(LgcError):
    """A layer graph is malformed: a cycle, an unknown layer or port, a duplicate name...

    `issues` carries the analysis issues (objects with `.Severity`, `.Layer`, `.Message`).
    """

    def __init__(self, message: str, issues: list | None = None):
        super().__init__(message)
        self.issues = list(issues or [])


class ShapeError(LgcError, ValueError):
    """An argument has the wrong size or rank for an op or layer."""


class FormatError(LgcError, ValueError):
    """A dlarray format label is invalid or does not fit the op."""


class TraceError(LgcError):
    """Tracing cannot continue: branching on a traced value, dlgradient outside dlfeval..."""


class CompileError(LgcError):
    """A backend failed to compile a kernel; the message names the op and layer."""


class DTypeError(LgcError, TypeError):
    """An array has a dtype lgc does not support for this use."""
