"""drive-viz: see what an end-to-end steering network looks at."""

__version__ = "0.1.0"
