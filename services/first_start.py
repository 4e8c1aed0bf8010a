"""On the embedded default's first start: a default source and an admin token.

The token is stored hashed; its plain text is kept in <data_dir>/credentials.json
(mode 0600) so later starts can print it again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.ingest.sources import new_source
from services.ingest.tables import Source
from services.runtime.access import create_token, token_scopes
from services.runtime.db import writing


def ensure_credentials(engine: Engine, data_dir: Path) -> dict:
    path = data_dir / "credentials.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    with writing(engine) as session:
        source = session.scalars(select(Source).where(Source.write_key == saved.get("write_key"))).first()
        if source is None:
            source = new_source(session, "default", "website")
        if not saved.get("admin_token") or token_scopes(session, saved["admin_token"]) is None:
            saved["admin_token"] = create_token(session, "first start", ["admin"])
        saved["write_key"] = source.write_key
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2))
    os.chmod(path, 0o600)
    return saved

