"""Quiet loading: transformers' progress bars and load reports kept out of the user's output.

`quiet()` silences them for a block and puts transformers' settings back after it (the load
paths use it, so `graftwork.load(bundle).predict` prints nothing whoever calls it);
`quiet_libraries()` silences them for the rest of the process (a run's own setup, where the
log is the output). Left out: other libraries' output (accelerate and torch print nothing on
these paths).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def quiet_libraries() -> None:
    """No transformers load reports (new or unused weights) or progress bars from here on."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def quiet() -> Iterator[None]:
    """transformers without its "Loading weights" progress bar and load reports for the block;
    its verbosity and progress-bar setting are as they were after it."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    quiet_libraries()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
