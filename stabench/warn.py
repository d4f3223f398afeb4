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
# Under pytest no line of the user's is on the stack while the plugin trains: the first frame past
# stabench is pytest's or pluggy's, which says less than stabench's own line.
_HARNESS = ("_pytest", "pluggy")


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the nearest caller outside this package (a script's line,
    a notebook cell's); under pytest's own frames, to stabench's line that warned, as before."""
    frame, level = sys._getframe(1), 2  # level 2: warn's caller
    while frame is not None and _in_package(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    if frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in _HARNESS:
        level = 2
    warnings.warn(message, category, stacklevel=level)


def _in_package(filename: str) -> bool:
    """A frame of stabench's files; ``<string>``, ``<frozen ...>`` and a notebook's ``<ipython-input-...>``
    are code of their own, not files, whatever the working folder."""
    return not filename.startswith("<") and os.path.realpath(filename).startswith(_PACKAGE)
