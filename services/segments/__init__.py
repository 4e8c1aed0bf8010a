"""Segments: membership of profiles in segments defined by conditions over traits."""
