"""Progress bars for long runs: tqdm in a terminal, a widget in Jupyter.

:func:`progress_bar` decides whether a bar is wanted (a terminal on
stderr, or a Jupyter kernel) and picks tqdm's form for the place it runs
in through ``tqdm.auto``.  Without tqdm, or when no bar is wanted, it
returns a :class:`NullBar` with the same methods, so callers never test
which one they hold.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["NullBar", "in_notebook", "progress_bar"]


class NullBar:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where stderr is no TTY)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ipython = shell.get_ipython()
    except AttributeError:
        return False
    return ipython is not None and hasattr(ipython, "kernel")


def progress_bar(
    total: int,
    *,
    initial: int = 0,
    enabled: bool | None = None,
    desc: str = "trials",
) -> Any:
    """A bar counting *total* steps, with rate and ETA, or a null bar.

    Args:
      total: steps in all, including the *initial* ones already done.
      initial: steps done before this bar started (a resumed sweep).
      enabled: True forces a bar, False forbids one; None (the default)
        shows one only on a terminal or in a Jupyter kernel, so that logs
        and ``--json`` output stay clean.
      desc: the bar's label.

    Returns:
      An object with ``update(n)``, ``set_postfix_str(text)`` and
      ``close()``: a tqdm bar, or a :class:`NullBar`.
    """
    if enabled is None:
        enabled = in_notebook() or _stderr_is_tty()
    if not enabled:
        return NullBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return NullBar()
    # mininterval bounds the cost of redrawing when trials take a
    # millisecond: the bar redraws at most ten times a second.
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="trial",
        mininterval=0.1,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def outcome_postfix(counts: Mapping[str, int]) -> str:
    """Non-zero outcome counts as short text, e.g. ``clean=9 loss=1``."""
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
