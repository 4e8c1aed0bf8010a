"""Pure identity rules: no I/O, no SQLAlchemy, no Kafka."""
