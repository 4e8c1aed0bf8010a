"""Creating sources: each has an id and a random write key."""
from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from services.ingest.tables import Source
from services.runtime.clock import now

KINDS = ("website", "mobile", "server", "social", "shop", "helpdesk")


def new_source(session: Session, name: str, kind: str) -> Source:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    source = Source(id="src_" + secrets.token_hex(6), name=name, kind=kind,
                    write_key="wk_" + secrets.token_urlsafe(24), enabled=True, created_at=now())
    session.add(source)
    return source
