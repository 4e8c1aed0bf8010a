"""The resolution decision for one event: which profile, which merges, which new links."""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.identity.domain.identifiers import Identifier

PROFILE_NAMESPACE = uuid.UUID("6f1c7f1e-5b0e-4d59-9a55-3c3f0f0e7a11")


def new_profile_id(identifier: Identifier) -> str:
    """Deterministic, so that replaying the log recreates the same ids."""
    return str(uuid.uuid5(PROFILE_NAMESPACE, f"{identifier.type}:{identifier.value}"))


@dataclass(frozen=True)
class Resolution:
    profile_id: str
    created: bool
    absorbed: tuple[str, ...]  # profiles merged into profile_id by this event
    new_links: tuple[Identifier, ...]  # identifiers not yet linked to profile_id


def resolve(identifiers: Sequence[Identifier], owners: Mapping[Identifier, str]) -> Resolution:
    """Link `identifiers` (highest priority first) given their current `owners`.

    Several owning profiles merge; the survivor is the smallest profile id, a
    tie-break that does not depend on which event or worker came first.
    """
    if not identifiers:
        raise ValueError("an event needs at least one identifier to resolve")
    matched = sorted({owners[i] for i in identifiers if i in owners})
    if matched:
        survivor, absorbed, created = matched[0], tuple(matched[1:]), False
    else:
        survivor, absorbed, created = new_profile_id(identifiers[0]), (), True
    new_links = tuple(i for i in identifiers if owners.get(i) != survivor)
    return Resolution(survivor, created, absorbed, new_links)
