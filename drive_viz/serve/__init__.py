"""Browsing runs and watching live drives in a web browser.

``web``: the tornado server running in a background thread, address parsing, the Host check.
``runs``: what a folder under RUNS_DIR is (replay, live, evaluate, compare, fleet, ...).
``index``: the one HTML index of runs (``drive-viz index`` writes it, ``drive-viz serve`` serves
it). ``files``: ``drive-viz serve``, read-only and contained in RUNS_DIR. ``stream``: the live
page of ``drive-viz live --serve`` (MJPEG stream, server-sent rows, uPlot plots).
"""
