"""Pure ingest rules: no I/O."""
