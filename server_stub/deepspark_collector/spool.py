"""The spool: each submission received and unpacked in a folder of its own, removed by a
background thread once answered, so that no request waits for the deletion."""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from pathlib import Path


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._sweeper = threading.Thread(target=self._sweep, name="spool-sweeper", daemon=True)
        self._sweeper.start()

    def folder(self) -> Path:
        """A new, empty folder for one submission."""
        return Path(tempfile.mkdtemp(prefix="submission-", dir=self.root))

    def discard(self, folder: Path) -> None:
        """Remove `folder` soon, off the caller's thread."""
        self._done.put(folder)

    def _sweep(self) -> None:
        while True:  # a daemon: what it has not removed at exit, the next start's clear() does
            folder = self._done.get()
            try:  # without descriptors (EMFILE) rmtree fails, but the folder is often empty
                folder.rmdir()
            except OSError:
                shutil.rmtree(folder, ignore_errors=True)


def clear(root: Path) -> None:
    """An empty spool at `root`: what a collector stopped mid-request left is removed (before
    any worker starts: a worker's own folders are never touched)."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
