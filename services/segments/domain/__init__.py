"""Pure segment rules: no I/O."""
