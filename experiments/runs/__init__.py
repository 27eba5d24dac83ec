"""Runs: repeat with rebuild, provenance (run.json), campaigns (resume) and their reports."""
