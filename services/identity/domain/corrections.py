"""What changed between two partitions of the same identifiers: merges and splits.

A profile whose identifiers all moved to one other profile was merged into it (this
includes a rename, when a stronger identifier joins and names the profile). A profile
whose identifiers went to several profiles, or lost some, was split: its events must
be resolved again.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.identity.domain.identifiers import Identifier


@dataclass(frozen=True)
class Merge:
    survivor: str
    absorbed: str


@dataclass(frozen=True)
class Split:
    profile_id: str
    parts: dict[str, tuple[Identifier, ...]]  # new profile id -> identifiers it took
    removed: tuple[Identifier, ...] = field(default=())  # blocked: in no profile any more


def corrections(old: Mapping[Identifier, str], new: Mapping[Identifier, str]
                ) -> tuple[list[Merge], list[Split]]:
    moves: dict[str, dict[str | None, list[Identifier]]] = {}
    for identifier, profile_id in old.items():
        moves.setdefault(profile_id, {}).setdefault(new.get(identifier), []).append(identifier)
    merges, splits = [], []
    for profile_id, targets in sorted(moves.items()):
        if len(targets) == 1 and None not in targets:
            (target,) = targets
            if target != profile_id:
                merges.append(Merge(target, profile_id))
            continue
        parts = sorted((t, tuple(sorted(ids))) for t, ids in targets.items() if t is not None)
        splits.append(Split(profile_id, dict(parts),
                            tuple(sorted(targets.get(None, [])))))
    return merges, splits
