"""Runs: the run writer, replay's pipeline stages, compare and the fleet (Ray)."""
