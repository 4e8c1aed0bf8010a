"""Erasure: find everything of one person, suppress their identifiers, destroy their keys,
delete their rows from every table.

It runs in one transaction that first locks every projector's offset rows, so no batch is
applied while it runs (on SQLite its write lock does the same): a batch applied before it
is erased by it; a batch applied after it finds the person's keys destroyed and their
identifiers suppressed, so it can't bring them back. The keys are destroyed (their own
transaction, on their own connection) before this one commits: a failure in between leaves
the request pending, and erasing again is harmless.

Rows are found through the columns that name a person: every table's `profile_id` (so a
new table with one is erased without a change here), merge columns (survivor, absorbed),
message ids of the person's events, and identifier values.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Table, delete, or_, select
from sqlalchemy.orm import Session

from services.identity.tables import IdentityComponent, IdentityEvent, IdentityLink, IdentityProfile
from services.privacy.tables import DeletionRequest, SuppressedIdentifier
from services.profile.tables import ProfileAlias, ProfileEvent, ProfileIdentity
from services.runtime import topics
from services.runtime.clock import format_time, now
from services.runtime.db import Base, in_chunks, insert_new, pairs_in
from services.runtime.log import Message
from services.runtime.sealing import KeyStore, identifier_subject, kids_of, profile_subject
from services.runtime.tables import ConsumerOffset, ParkedEvent
from services.segments.tables import SegmentMember

# the request stays, as the record that erasure happened; components are shared (below)
KEPT = {"deletion_requests", "identity_components"}
MERGE_COLUMNS = ("survivor", "absorbed")
IDENTIFIER_COLUMNS = {"identity_links": ("type", "value"), "identity_overrides": ("type", "value"),
                      "identity_refusals": ("dropped_type", "dropped_value"),
                      "profile_identities": ("type", "value")}


@dataclass
class Person:
    """What is held about one person: their profile ids (the survivor and every id merged
    into it), identifiers and the message ids of their events."""

    profiles: set[str] = field(default_factory=set)
    identifiers: set[tuple[str, str]] = field(default_factory=set)
    message_ids: set[str] = field(default_factory=set)
    components: set[str] = field(default_factory=set)


def find_person(session: Session, profile_id: str | None) -> Person:
    if profile_id is None:
        return Person()
    profiles = _merged_family(session, _survivor(session, profile_id))
    links = session.execute(select(IdentityLink.type, IdentityLink.value, IdentityLink.component)
                            .where(IdentityLink.profile_id.in_(profiles))).all()
    known = session.execute(select(ProfileIdentity.type, ProfileIdentity.value)
                            .where(ProfileIdentity.profile_id.in_(profiles))).all()
    messages = set(session.scalars(select(IdentityEvent.message_id).where(IdentityEvent.profile_id.in_(profiles))))
    messages |= set(session.scalars(select(ProfileEvent.message_id).where(ProfileEvent.profile_id.in_(profiles))))
    return Person(profiles, {(t, v) for t, v, _ in links} | {(t, v) for t, v in known}, messages,
                  {c for *_, c in links})


def _survivor(session: Session, profile_id: str) -> str:
    """The profile now holding `profile_id` (merges followed to the end)."""
    seen = {profile_id}
    while (row := session.get(IdentityProfile, profile_id)) is not None and row.merged_into \
            and row.merged_into not in seen:
        profile_id = row.merged_into
        seen.add(profile_id)
    return profile_id


def _merged_family(session: Session, survivor: str) -> set[str]:
    family, frontier = {survivor}, {survivor}
    while frontier:
        absorbed = set(session.scalars(select(IdentityProfile.profile_id)
                                       .where(IdentityProfile.merged_into.in_(frontier))))
        absorbed |= set(session.scalars(select(ProfileAlias.absorbed).where(ProfileAlias.survivor.in_(frontier))))
        frontier = absorbed - family
        family |= frontier
    return family


def lock_projectors(session: Session) -> None:
    """Wait for every projector's batch under way, and hold the next ones until commit."""
    session.scalars(select(ConsumerOffset).order_by(ConsumerOffset.consumer, ConsumerOffset.topic,
                                                    ConsumerOffset.partition).with_for_update()).all()


def suppress(session: Session, keys: KeyStore, request: DeletionRequest, person: Person) -> set[str]:
    """Put the person's identifiers on the suppression list; answers their kids."""
    kids = {request.identifier_kid} | {keys.kid(identifier_subject(t, v)) for t, v in person.identifiers}
    for kid in sorted(kids):
        insert_new(session, SuppressedIdentifier, {
            "kid": kid, "identifier_type": request.identifier_type if kid == request.identifier_kid else "",
            "request_id": request.id, "suppressed_at": now()}, ["kid"])
    return kids


def erase(session: Session, keys: KeyStore, person: Person, identifier_kids: set[str]) -> tuple[dict, list]:
    """Destroy the person's keys and delete their rows; answers rows deleted per table and
    the Audience Exited messages of the segments they leave."""
    kids = identifier_kids | {keys.kid(profile_subject(p)) for p in person.profiles}
    keys.destroy(kids)
    exits = _exits(session, person.profiles)
    deleted = {table.name: count for table in Base.metadata.sorted_tables
               if (count := _delete_rows(session, table, person)) > 0}
    deleted["identity_components"] = _delete_components(session, person.components)
    deleted["parked_events"] = _delete_parked(session, kids)
    session.query(DeletionRequest).filter(DeletionRequest.profile_id.in_(person.profiles)) \
        .update({"profile_id": None}, synchronize_session=False)
    return {"keys_destroyed": len(kids), "rows_deleted": deleted}, exits


def _delete_rows(session: Session, table: Table, person: Person) -> int:
    if table.name in KEPT:
        return 0
    columns = table.c
    conditions = []
    if "profile_id" in columns:
        conditions += _in(columns.profile_id, person.profiles)
    conditions += [c for name in MERGE_COLUMNS if name in columns for c in _in(columns[name], person.profiles)]
    if "message_id" in columns and "profile_id" not in columns:  # dedupe records, violations
        conditions += _in(columns.message_id, person.message_ids)
    if table.name in IDENTIFIER_COLUMNS:
        type_, value = IDENTIFIER_COLUMNS[table.name]
        conditions += [pairs_in(session, columns[type_], columns[value], chunk)
                       for chunk in in_chunks(person.identifiers)]
    if not conditions:
        return 0
    return session.execute(delete(table).where(or_(*conditions))).rowcount or 0


def _delete_components(session: Session, components: set[str]) -> int:
    """The person's identity components no identifier of anyone else is still in."""
    still_used = set(session.scalars(select(IdentityLink.component).where(
        IdentityLink.component.in_(components)))) if components else set()
    return sum(session.execute(delete(IdentityComponent).where(IdentityComponent.component.in_(chunk))).rowcount
               or 0 for chunk in in_chunks(components - still_used))


def _delete_parked(session: Session, kids: set[str]) -> int:
    """Parked records sealed under a destroyed key: nobody can read or retry them now."""
    rows = session.execute(select(ParkedEvent.id, ParkedEvent.value)).all()
    doomed = [id_ for id_, value in rows if kids.intersection(kids_of(value))]
    for chunk in in_chunks(doomed):
        session.execute(delete(ParkedEvent).where(ParkedEvent.id.in_(chunk)))
    return len(doomed)


def _exits(session: Session, profiles: set[str]) -> list[tuple[str, Message]]:
    """Audience Exited for each segment the person was in, so marketing tools drop them too
    (the history rows go with the person, so these carry no sequence number)."""
    members = session.execute(select(SegmentMember.segment_key, SegmentMember.profile_id)
                              .where(SegmentMember.profile_id.in_(profiles))).all()
    at = format_time(now())
    return [(topics.SEGMENTS_MEMBERSHIP, Message.of(profile_id, {
        "type": "track", "event": "Audience Exited", "profile_id": profile_id, "segment": segment,
        "reason": "erased", "timestamp": at})) for segment, profile_id in members]


def _in(column, values: Iterable) -> list:
    return [column.in_(chunk) for chunk in in_chunks(values)]
