"""Warnings shown at the user's line: the first caller outside stabench.

A fixed ``stacklevel`` counts stabench's own calls, and a warning reached through two paths
(a script's ``stabench.study``, the CLI, a hook) then points into stabench, showing one of its
lines instead of the call that caused it.
"""
from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.realpath(__file__)) + os.sep


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the nearest frame outside this package."""
    frame, level = sys._getframe(1), 2  # level 2: warn's caller
    while frame is not None and os.path.realpath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
