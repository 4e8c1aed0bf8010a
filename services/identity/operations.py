"""What operators and readers ask of the identity graph: a profile's identities and
history, and unmerge (remove or block an identifier, then resolve its events again)."""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.identity.domain.identifiers import Identifier
from services.identity.domain.rules import Rules
from services.identity.store import GraphStore, operator_rules
from services.identity.tables import (IdentityLink, IdentityMerge, IdentityOverride, IdentityProfile,
                                      IdentityRefusal, IdentitySplit)
from services.runtime.clock import format_time, now
from services.runtime.db import upsert
from services.runtime.log import Log, Message
from services.runtime.projector import Output

ACTIONS = {"remove": "isolate", "block": "block"}


class NotFound(LookupError):
    pass


def current_id(session: Session, profile_id: str) -> str | None:
    """An absorbed id reads as the profile now holding the identifier it was named after."""
    row = session.get(IdentityProfile, profile_id)
    if row is None:
        return None
    return row.merged_into or profile_id


def describe(session: Session, profile_id: str) -> dict:
    current = current_id(session, profile_id)
    if current is None:
        raise NotFound(f"no profile {profile_id!r}")
    links = session.scalars(select(IdentityLink).where(IdentityLink.profile_id == current)
                            .order_by(IdentityLink.type, IdentityLink.value)).all()
    merges = _merge_history(session, current)
    splits = session.scalars(select(IdentitySplit).where(IdentitySplit.profile_id == current)
                             .order_by(IdentitySplit.id)).all()
    refusals = session.scalars(select(IdentityRefusal).where(IdentityRefusal.profile_id == current)
                               .order_by(IdentityRefusal.id)).all()
    return {"profile_id": current, "requested_id": profile_id,
            "identities": [{"type": r.type, "value": r.value, "first_message_id": r.first_message_id}
                           for r in links],
            "merges": [{"survivor": m.survivor, "absorbed": m.absorbed, "message_id": m.message_id,
                        "identifiers": m.identifiers, "merged_at": format_time(m.merged_at)} for m in merges],
            "splits": [{"from": s.profile_id, "parts": s.parts, "removed": s.removed, "cause": s.cause,
                        "split_at": format_time(s.split_at)} for s in splits],
            "refused_merges": [{"message_id": r.message_id, "dropped": {"type": r.dropped_type,
                                                                        "value": r.dropped_value},
                                "conflict_type": r.conflict_type, "reason": r.reason} for r in refusals]}


def _merge_history(session: Session, current: str) -> list[IdentityMerge]:
    """Merges into `current` and, transitively, into the profiles it absorbed (their history
    moved with them); and a merge of `current` into another, should it read as itself again."""
    found: dict[int, IdentityMerge] = {}
    ids, todo = {current}, [current]
    while todo:
        rows = session.scalars(select(IdentityMerge).where(or_(IdentityMerge.survivor.in_(todo),
                                                               IdentityMerge.absorbed == current))).all()
        found |= {r.id: r for r in rows}
        todo = sorted({r.absorbed for r in rows if r.survivor in todo} - ids)
        ids |= set(todo)
    return [found[i] for i in sorted(found)]


def unmerge(session: Session, log: Log, rules: Rules, profile_id: str, identifier: Identifier,
            action: str, reason: str) -> dict:
    """Remove (isolate: it links to nothing again) or block (it identifies nobody) an identifier
    of a profile; the profile is split and its events resolved again, published before commit."""
    current = current_id(session, profile_id)
    link = session.get(IdentityLink, (identifier.type, identifier.value))
    if current is None or link is None or link.profile_id != current:
        raise NotFound(f"profile {profile_id!r} has no identifier {identifier.type} {identifier.value!r}")
    upsert(session, IdentityOverride, [{"type": identifier.type, "value": identifier.value,
                                        "action": ACTIONS[action], "profile_id": current,
                                        "reason": reason, "created_at": now()}],
           keys=["type", "value"], update=["action", "profile_id", "reason", "created_at"])
    cause = f"operator: {action} {identifier.type} {identifier.value}: {reason}"[:300]
    store = GraphStore(session, operator_rules(session, rules), log)
    outputs = store.recompute(identifier, cause)
    publish(log, outputs)
    splits = [m for _, m in outputs if b'"kind":"split"' in m.value]
    return {"profile_id": current, "action": action, "identifier": identifier.as_json(),
            "split_records": len(splits), "events_resolved_again": sum(
                b'"reresolved":true' in m.value for _, m in outputs)}


def publish(log: Log, outputs: list[Output]) -> None:
    by_topic: dict[str, list[Message]] = defaultdict(list)
    for topic, message in outputs:
        by_topic[topic].append(message)
    for topic, messages in by_topic.items():
        log.append(topic, messages)
