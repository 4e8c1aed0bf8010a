"""Re-evaluates, for each changed profile, only the segments that read what changed."""
from __future__ import annotations

from sqlalchemy.orm import Session

from services.runtime import topics
from services.runtime.log import Record
from services.runtime.projector import Output
from services.segments.domain.index import SegmentIndex, changed_facts
from services.segments.domain.lifecycle import LifecycleRules
from services.segments.lifecycle import advance, forget
from services.segments.membership import load_index, lock_catalog, reevaluate
from services.segments.tables import SegmentProfile


class SegmentsHandler:
    """Also keeps lifecycle stages, first, so segments that read the stage see this snapshot's."""

    name = "segments"
    topics = (topics.PROFILES_CHANGED,)

    def __init__(self, rules: LifecycleRules | None = None):
        self.rules = rules or LifecycleRules()

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        lock_catalog(session, exclusive=False)
        index, _ = load_index(session)
        outputs: list[Output] = []
        for record in batch:
            change = record.json()
            if "merged_into" in change or change.get("removed"):
                outputs += self._forget(session, change["profile_id"], index)
            else:
                outputs += self._update(session, change, index)
        return outputs

    def _update(self, session: Session, change: dict, index: SegmentIndex) -> list[Output]:
        stored = session.get(SegmentProfile, change["profile_id"], with_for_update=True)
        if stored is not None and stored.version >= change["version"]:
            return []  # an older or redelivered snapshot
        stage = advance(session, change, self.rules)
        if stored is None:
            stored = SegmentProfile(profile_id=change["profile_id"], stage=None, consent={})
            session.add(stored)
            facts = None  # new to us: every segment is evaluated
        else:
            consent = change.get("consent") or {}
            facts = changed_facts(self._changed(change, stored), stage != stored.stage,
                                  {p for p in consent.keys() | (stored.consent or {}).keys()
                                   if consent.get(p) != (stored.consent or {}).get(p)})
        stored.version, stored.traits = change["version"], change["traits"]
        stored.computed, stored.stage = change.get("computed") or {}, stage
        stored.consent = change.get("consent") or {}
        return reevaluate(session, change["profile_id"], stored, index, index.affected(facts))

    @staticmethod
    def _changed(change: dict, stored: SegmentProfile) -> set[str] | None:
        """What differs from the snapshot we hold, as well as what the profile says changed.

        The profile's `changed` is relative to its own last commit, but the snapshot we hold
        may be one it published and then rolled back (killed before its commit); the replayed
        batch can then end where we were before it (a trait set and set back), so its
        `changed` would leave out what differs from what we hold.
        """
        if change.get("changed") is None:
            return None
        differing = {name for before, after in ((stored.traits or {}, change.get("traits") or {}),
                                                (stored.computed or {}, change.get("computed") or {}))
                     for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
        return set(change["changed"]) | differing

    @staticmethod
    def _forget(session: Session, profile_id: str, index: SegmentIndex) -> list[Output]:
        stored = session.get(SegmentProfile, profile_id)
        if stored is not None:
            session.delete(stored)
        forget(session, profile_id)
        return reevaluate(session, profile_id, None, index, index.ordered)
