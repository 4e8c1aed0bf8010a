"""Logical topic names of the data flow; the log backend adds the configured prefix."""

EVENTS_RAW = "events.raw"
EVENTS_REJECTED = "events.rejected"
EVENTS_RESOLVED = "events.resolved"
PROFILES_CHANGED = "profiles.changed"
SEGMENTS_MEMBERSHIP = "segments.membership"

ALL = (EVENTS_RAW, EVENTS_REJECTED, EVENTS_RESOLVED, PROFILES_CHANGED, SEGMENTS_MEMBERSHIP)
