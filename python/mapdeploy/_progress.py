"""The progress bar shown while a client waits for a job.

tqdm in a terminal, tqdm's notebook widget in Jupyter, nothing otherwise
(output to a file or a pipe, or ``progress=False``).
"""
from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress", "choose"]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel, not the terminal IPython)."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def choose(progress: bool | None) -> str | None:
    """'notebook', 'terminal' or None (no bar) for a progress argument.

    ``None`` decides from where the output goes: a Jupyter kernel gets the
    widget, a terminal (stderr is a tty) the text bar, anything else nothing.
    ``True`` forces a bar (text when not in a notebook), ``False`` none.
    """
    if progress is False:
        return None
    if _in_notebook():
        return "notebook"
    if progress:
        return "terminal"
    stream = sys.stderr
    try:
        return "terminal" if stream is not None and stream.isatty() else None
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return None


class Progress:
    """A bar of finished tasks out of total, with failed ones counted in the postfix."""

    def __init__(self, kind: str, name: str, total: int) -> None:
        bar: Any = None
        if kind == "notebook":
            try:
                from tqdm.notebook import tqdm as notebook_tqdm
                bar = notebook_tqdm(total=total, desc=name, unit="task")
            except ImportError:  # ipywidgets missing: the text bar still renders in a notebook
                bar = None
        if bar is None:
            from tqdm import tqdm as text_tqdm
            bar = text_tqdm(total=total, desc=name, unit="task", file=sys.stderr,
                            dynamic_ncols=True)
        self._bar = bar
        self._failed = -1

    def update(self, done: int, failed: int, note: str | None = None) -> None:
        """Moves the bar to done finished tasks (failed of them failed)."""
        if failed != self._failed or note:
            self._failed = failed
            postfix = {"failed": failed}
            if note:
                postfix["stage"] = note  # type: ignore[assignment]
            self._bar.set_postfix(postfix, refresh=False)
        if done != self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self, state: str) -> None:
        """Ends the bar, leaving it on screen with the job's final state."""
        self._bar.set_postfix({"failed": max(self._failed, 0), "status": state}, refresh=False)
        self._bar.close()
