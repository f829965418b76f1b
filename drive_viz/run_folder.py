"""A run's output folder, shared by replay and live: never clobbered without ``--overwrite``,
and no file in it looks complete before it is (each output is written under a hidden
``.NAME.partial`` name and renamed when done)."""

from __future__ import annotations

import os
from pathlib import Path

from drive_viz.atomic import partial_path
from drive_viz.errors import DriveVizError, OptionError


class RunFolder:
    """The folder ``path`` holding the outputs ``names``.

    An existing, non-empty folder is refused unless ``overwrite``; then only the files named in
    ``names`` (and their partial copies) are deleted, never anything else in it.
    """

    def __init__(self, path: Path, names: tuple[str, ...], overwrite: bool) -> None:
        self.path = path
        self.names = names
        if path.exists() and not path.is_dir():
            raise DriveVizError(f"{path}: exists and is not a folder")
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise OptionError(f"{path}: already exists and is not empty "
                                  "(pass overwrite to replace the run)", "overwrite")
            for name in names:
                self.final(name).unlink(missing_ok=True)
                self.partial(name).unlink(missing_ok=True)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DriveVizError(f"{path}: cannot create ({exc.strerror})") from None

    def partial(self, name: str) -> Path:
        """Where ``name`` is written while it is incomplete."""
        return partial_path(self.path / name)

    def final(self, name: str) -> Path:
        return self.path / name

    def commit(self, *names: str) -> None:
        """Rename the partial files to their final names, in the order given (default: all)."""
        for name in names or self.names:
            os.replace(self.partial(name), self.final(name))

    def discard(self) -> None:
        """Delete every partial file (after a failure or an interruption)."""
        for name in self.names:
            self.partial(name).unlink(missing_ok=True)
