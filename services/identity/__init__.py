"""Identity: links identifiers into profiles and writes events.resolved (with merges)."""
