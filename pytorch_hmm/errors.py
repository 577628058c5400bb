"""The package's own exception classes.

Every error the library raises on bad input is one of these, so callers can catch the
library's complaints apart from bugs elsewhere, while ``except ValueError`` /
``except TypeError`` keep working:

- :class:`HMMError`: the base of all of them.
- :class:`HMMValueError` (also a ``ValueError``): a value, shape, length or file content is
  wrong; the message names the argument and what was expected.
- :class:`HMMTypeError` (also a ``TypeError``): an argument has the wrong type or dtype.
"""

from __future__ import annotations

__all__ = ["HMMError", "HMMTypeError", "HMMValueError"]


class HMMError(Exception):
    """Base class of the errors raised by pytorch_hmm."""


class HMMValueError(HMMError, ValueError):
    """A bad value (shape, length, range, NaN, file content); the message names it."""


class HMMTypeError(HMMError, TypeError):
    """An argument of the wrong type or dtype; the message names it."""
