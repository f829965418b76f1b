"""The error types drive-viz raises for bad input.

Every message is one line that names the file (or argument) and the problem. The CLI prints
it as ``drive-viz: error: <message>`` and exits with status 2.
"""


class DriveVizError(Exception):
    """Base class: bad input or an environment problem the user can fix."""


class RecordingError(DriveVizError):
    """A recording (or a dataset to import) is unreadable as a whole."""


class FrameError(DriveVizError):
    """One frame of a recording is unusable (missing, corrupt or wrong-size image)."""


class ModelError(DriveVizError):
    """A model file is missing, unsafe, or does not fit the frames it is asked to process."""


class OptionError(DriveVizError, ValueError):
    """A bad value of one or more named parameters. The message words them by their Python
    names (``batch_size``), listed in ``names``, so a library caller reads the names it passed;
    the CLI prints them as its flags (``--batch-size``)."""

    def __init__(self, message: str, *names: str) -> None:
        super().__init__(message)
        self.names = names
