"""The op IR: types, graphs and builders (`core`), text form (`text`), verifier (`verify`)."""

from .verify import VerifyError, verify

__all__ = ["VerifyError", "verify"]
