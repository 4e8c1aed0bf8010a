"""Rapport: an event-sourced customer data platform.

Each sub-package is one service of the data flow in DESIGN.md (ingest, identity,
profile, segments); `runtime` is the plumbing they all share.
"""
