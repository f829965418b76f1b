"""Runs: the run writer, the summary every run shares, and replay's pipeline stages."""
