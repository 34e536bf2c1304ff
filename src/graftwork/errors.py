"""Errors a user can act on.

Every message says what was wrong, where (file, line, recipe key) and what to do. Library
code raises these instead of letting a stack trace from deep inside transformers or torch
reach the user; the CLI prints them without a traceback.
"""

from __future__ import annotations


class GraftError(Exception):
    """A problem with the user's input or environment that the user can fix."""


class RecipeError(GraftError):
    """The recipe (or a command-line override) is invalid."""


class DataError(GraftError):
    """A data file cannot be read or holds an invalid row."""


class BackboneError(GraftError):
    """A backbone cannot be found or loaded safely."""


class BundleError(GraftError):
    """A model bundle is missing, incomplete or was changed after it was written."""
