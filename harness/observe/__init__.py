"""Observation: parsers (pure, on lines) for what the guest reports, and
the guest-side commands that collect it."""
