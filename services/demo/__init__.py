"""Demo data: a generated population sent through the real ingest API."""
