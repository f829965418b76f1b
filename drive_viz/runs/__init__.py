"""Runs: the run writer, the summary every run shares, replay's pipeline stages, compare and
the fleet (Ray)."""
