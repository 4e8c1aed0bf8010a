"""Pure profile rules: no I/O."""
