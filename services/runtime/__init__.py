"""Shared runtime: settings, database, the log and the projector loop."""
