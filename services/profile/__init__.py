"""Profile: one record per person with traits (last write wins), counts and a timeline."""
