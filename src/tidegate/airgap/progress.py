"""Progress of a long command: a bar redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    LINE_EVERY = 5.0  # seconds between plain lines

    def __init__(self, what: str, total: int, unit: str = "files", out: TextIO | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.done = 0
        self._shown = time.monotonic()  # plain lines: the first after LINE_EVERY, not at once

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and (now - self._shown > 0.1 or self.done >= self.total):
            width = 30
            filled = width * self.done // self.total if self.total else width
            self.out.write(f"\r{self.what} [{'#' * filled}{' ' * (width - filled)}] {self.done}/{self.total} {self.unit}")
            self.out.flush()
            self._shown = now
        elif not self.tty and now - self._shown > self.LINE_EVERY:
            print(f"{self.what}: {self.done}/{self.total} {self.unit}", file=self.out, flush=True)
            self._shown = now

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
