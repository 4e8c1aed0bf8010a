"""Ingest: Segment-compatible HTTP API that validates events and appends them to the log."""
