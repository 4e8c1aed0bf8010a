"""Alembic environment: every service's tables, on the engine handed in by `upgrade()`."""
from alembic import context

import services.identity.tables  # noqa: F401  (each import registers its tables)
import services.ingest.tables  # noqa: F401
import services.privacy.tables  # noqa: F401
import services.profile.tables  # noqa: F401
import services.runtime.access  # noqa: F401
import services.runtime.audit  # noqa: F401
import services.runtime.sealing  # noqa: F401
import services.runtime.tables  # noqa: F401
import services.segments.tables  # noqa: F401
from services.runtime.db import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
