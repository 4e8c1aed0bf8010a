"""Resolves each raw event to a profile, records merges, writes events.resolved."""
from __future__ import annotations

from sqlalchemy import or_, select, tuple_, update
from sqlalchemy.orm import Session

from services.identity.domain.identifiers import Identifier, identifiers_of
from services.identity.domain.resolution import Resolution, resolve
from services.identity.tables import IdentityLink, IdentityMerge, IdentityProfile
from services.runtime import topics
from services.runtime.clock import parse_time
from services.runtime.db import insert_new
from services.runtime.log import Message, Record
from services.runtime.projector import Output


class IdentityHandler:
    name = "identity"
    topics = (topics.EVENTS_RAW,)

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        outputs: list[Output] = []
        for record in batch:
            event = record.json()
            identifiers = identifiers_of(event)
            if not identifiers:
                continue  # ingest guarantees one; blocked values may still leave none
            resolution = resolve(identifiers, self._owners(session, identifiers))
            outputs += self._record(session, event, identifiers, resolution)
        return outputs

    @staticmethod
    def _owners(session: Session, identifiers: list[Identifier]) -> dict[Identifier, str]:
        keys = [(i.type, i.value) for i in identifiers]
        rows = session.execute(select(IdentityLink.type, IdentityLink.value, IdentityLink.profile_id)
                               .where(tuple_(IdentityLink.type, IdentityLink.value).in_(keys))
                               .with_for_update())
        return {Identifier(t, v): p for t, v, p in rows}

    def _record(self, session: Session, event: dict, identifiers: list[Identifier],
                resolution: Resolution) -> list[Output]:
        survivor, message_id = resolution.profile_id, event["messageId"]
        outputs: list[Output] = []
        if resolution.created:
            insert_new(session, IdentityProfile, {"profile_id": survivor}, ["profile_id"])
        for absorbed in resolution.absorbed:
            self._merge(session, survivor, absorbed, event, identifiers)
            outputs.append((topics.EVENTS_RESOLVED, Message.of(survivor, {
                "kind": "merge", "survivor": survivor, "absorbed": absorbed,
                "message_id": message_id, "identifiers": _as_json(identifiers)})))
        for identifier in resolution.new_links:
            insert_new(session, IdentityLink, {"type": identifier.type, "value": identifier.value,
                                               "profile_id": survivor, "first_message_id": message_id},
                       ["type", "value"])
        outputs.append((topics.EVENTS_RESOLVED, Message.of(survivor, {
            "kind": "event", "profile_id": survivor, "identifiers": _as_json(identifiers),
            "event": event})))
        return outputs

    @staticmethod
    def _merge(session: Session, survivor: str, absorbed: str, event: dict,
               identifiers: list[Identifier]) -> None:
        session.execute(update(IdentityLink).where(IdentityLink.profile_id == absorbed)
                        .values(profile_id=survivor))
        session.execute(update(IdentityProfile)
                        .where(or_(IdentityProfile.profile_id == absorbed,
                                   IdentityProfile.merged_into == absorbed))
                        .values(merged_into=survivor))
        session.add(IdentityMerge(survivor=survivor, absorbed=absorbed,
                                  message_id=event["messageId"], identifiers=_as_json(identifiers),
                                  merged_at=parse_time(event["receivedAt"])))
        session.flush()


def _as_json(identifiers: list[Identifier]) -> list[dict]:
    return [{"type": i.type, "value": i.value} for i in identifiers]
