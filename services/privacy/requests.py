"""Deletion requests: taken in over HTTP (202 at once), carried out by the erasure worker."""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.identity.domain.identifiers import normalise
from services.identity.domain.rules import Rules
from services.identity.tables import IdentityLink
from services.privacy import erasure
from services.privacy.tables import DeletionRequest, SuppressedIdentifier
from services.runtime.background import BackgroundLoop
from services.runtime.clock import now
from services.runtime.db import insert_new, reading, writing
from services.runtime.http import ApiError
from services.runtime.log import Log, publish_all
from services.runtime.sealing import KeyStore, identifier_subject

logger = logging.getLogger(__name__)
MODES = ("delete_and_suppress", "suppress")


def request_deletion(session: Session, keys: KeyStore, rules: Rules, type_: str, value: str,
                     mode: str) -> DeletionRequest:
    """Record a request, and suppress its identifier at once (new events for it are dropped
    from now on). Only the identifier's kid is kept, never its value."""
    if mode not in MODES:
        raise ApiError(422, "invalid_mode", f"mode must be one of {', '.join(MODES)}", "mode")
    normal = normalise(type_, value, rules)
    if normal is None:
        raise ApiError(422, "invalid_identifier", f"{type_} {value!r} is blank or blocked: it names nobody",
                       "value")
    request = DeletionRequest(
        id=uuid.uuid4().hex, identifier_type=type_, mode=mode, status="pending", requested_at=now(),
        identifier_kid=keys.kid(identifier_subject(type_, normal)), outcome={},
        profile_id=session.scalars(select(IdentityLink.profile_id).where(
            IdentityLink.type == type_, IdentityLink.value == normal)).first())
    session.add(request)
    insert_new(session, SuppressedIdentifier, {"kid": request.identifier_kid, "identifier_type": type_,
                                               "request_id": request.id, "suppressed_at": now()}, ["kid"])
    return request


def carry_out(engine: Engine, keys: KeyStore, log: Log, request_id: str) -> None:
    """Erase (or only suppress) the person a pending request names, in one transaction."""
    with writing(engine) as session:
        erasure.lock_projectors(session)
        request = session.get(DeletionRequest, request_id, with_for_update=True)
        if request is None or request.status != "pending":
            return
        person = erasure.find_person(session, request.profile_id)
        kids = erasure.suppress(session, keys, request, person)
        outcome, exits = {"profiles": len(person.profiles), "identifiers_suppressed": len(kids)}, []
        if request.mode == "delete_and_suppress":
            erased, exits = erasure.erase(session, keys, person, kids)
            outcome |= erased
        request.status, request.done_at, request.outcome = "done", now(), outcome
        publish_all(log, exits)  # before the commit, like a projector: at least once


class ErasureWorker(BackgroundLoop):
    """Carries out pending deletion requests, oldest first."""

    name = "erasure"
    idle_wait_s = 0.2

    def __init__(self, engine: Engine, keys: KeyStore, log: Log):
        super().__init__()
        self.engine, self.keys, self.log = engine, keys, log

    def step(self) -> bool:
        with reading(self.engine) as session:  # a read: on SQLite polling must not take the write lock
            pending = session.scalars(select(DeletionRequest.id).where(DeletionRequest.status == "pending")
                                      .order_by(DeletionRequest.requested_at).limit(1)).first()
        if pending is None:
            return False
        try:
            carry_out(self.engine, self.keys, self.log, pending)
        except Exception as error:  # noqa: BLE001 - recorded on the request; retried next step
            logger.exception("erasure of request %s failed; it stays pending", pending)
            with writing(self.engine) as session:
                session.get(DeletionRequest, pending).error = f"{type(error).__name__}: {error}"[:2000]
        return True
