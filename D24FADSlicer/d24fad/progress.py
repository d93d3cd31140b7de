"""Progress reporting for long work: a tqdm bar for people, JSON lines for programs.

The Slicer module runs the CLI in a background process with ``--progress json`` and reads
one JSON object per line from stderr::

    {"event": "progress", "stage": "scoring", "done": 3, "total": 40}
    {"event": "done", "stage": "scoring"}
"""

from __future__ import annotations

import json
import sys
from typing import Callable, Literal, Optional

ProgressMode = Literal["bar", "json", "none"]
ProgressCallback = Callable[[int, int], None]


class Progress:
    """Report ``done`` out of ``total`` steps of one stage in the chosen mode."""

    def __init__(self, total: int, stage: str, mode: ProgressMode = "bar", stream=None):
        self.total = int(total)
        self.stage = stage
        self.mode = mode
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=stage, file=self._stream, dynamic_ncols=True)
        elif mode == "json":
            self._emit({"event": "progress", "stage": stage, "done": 0, "total": self.total})

    def _emit(self, payload: dict) -> None:
        self._stream.write(json.dumps(payload) + "\n")
        self._stream.flush()

    def update(self, done: int, total: Optional[int] = None, **postfix) -> None:
        """Set the absolute number of finished steps (callbacks report absolute counts)."""
        if total is not None:
            self.total = int(total)
        step = int(done) - self.done
        self.done = int(done)
        if self._bar is not None:
            if total is not None:
                self._bar.total = self.total
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(step)
        elif self.mode == "json":
            payload = {"event": "progress", "stage": self.stage, "done": self.done, "total": self.total}
            payload.update({k: (float(v) if isinstance(v, (int, float)) else str(v)) for k, v in postfix.items()})
            self._emit(payload)

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "json":
            self._emit({"event": "done", "stage": self.stage})

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
