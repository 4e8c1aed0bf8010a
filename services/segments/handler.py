"""Re-evaluates, for each changed profile, only the segments that read what changed."""
from __future__ import annotations

from sqlalchemy.orm import Session

from services.runtime import topics
from services.runtime.clock import now
from services.runtime.log import Record
from services.runtime.projector import Output
from services.segments.batch import BatchState
from services.segments.domain.conditions import ProfileFacts
from services.segments.domain.index import SegmentIndex, changed_facts, membership_changes
from services.segments.domain.lifecycle import LifecycleRules
from services.segments.lifecycle import advance
from services.segments.membership import load_index, lock_catalog


class SegmentsHandler:
    """Also keeps lifecycle stages, first, so segments that read the stage see this snapshot's."""

    name = "segments"
    topics = (topics.PROFILES_CHANGED,)

    def __init__(self, rules: LifecycleRules | None = None):
        self.rules = rules or LifecycleRules()

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        lock_catalog(session, exclusive=False)
        index, _ = load_index(session)
        changes = [record.json() for record in batch]
        state = BatchState.read(session, {change["profile_id"] for change in changes})
        for change in changes:
            if "merged_into" in change or change.get("removed"):
                self._forget(state, change["profile_id"], index)
            else:
                self._update(state, change, index)
        return state.write(session)

    def _update(self, state: BatchState, change: dict, index: SegmentIndex) -> None:
        profile = state.profiles[change["profile_id"]]
        stored = profile.snapshot
        if stored is not None and stored["version"] >= change["version"]:
            return  # an older or redelivered snapshot
        stage = advance(state, change, self.rules)
        if stored is None:
            facts = None  # new to us: every segment is evaluated
        else:
            consent = change.get("consent") or {}
            facts = changed_facts(self._changed(change, stored), stage != stored["stage"],
                                  {p for p in consent.keys() | (stored["consent"] or {}).keys()
                                   if consent.get(p) != (stored["consent"] or {}).get(p)})
        profile.snapshot = {"version": change["version"], "traits": change["traits"],
                            "computed": change.get("computed") or {}, "stage": stage,
                            "consent": change.get("consent") or {}}
        self._reevaluate(state, change["profile_id"], index, index.affected(facts))

    @staticmethod
    def _changed(change: dict, stored: dict) -> set[str] | None:
        """What differs from the snapshot we hold, as well as what the profile says changed.

        The profile's `changed` is relative to its own last commit, but the snapshot we hold
        may be one it published and then rolled back (killed before its commit); the replayed
        batch can then end where we were before it (a trait set and set back), so its
        `changed` would leave out what differs from what we hold.
        """
        if change.get("changed") is None:
            return None
        differing = {name for before, after in ((stored["traits"] or {}, change.get("traits") or {}),
                                                (stored["computed"] or {}, change.get("computed") or {}))
                     for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
        return set(change["changed"]) | differing

    def _forget(self, state: BatchState, profile_id: str, index: SegmentIndex) -> None:
        profile = state.profiles[profile_id]
        profile.snapshot = profile.stage = None  # a profile merged away has no stage of its own
        self._reevaluate(state, profile_id, index, index.ordered)

    @staticmethod
    def _reevaluate(state: BatchState, profile_id: str, index: SegmentIndex, keys: list[str]) -> None:
        profile, at = state.profiles[profile_id], now()
        snapshot = profile.snapshot
        facts = snapshot and ProfileFacts(snapshot["traits"] or {}, snapshot["computed"], snapshot["stage"],
                                          snapshot["consent"])
        for key, entered in membership_changes(index, keys, facts, profile.members):
            state.enter_or_exit(profile_id, key, entered, at)
