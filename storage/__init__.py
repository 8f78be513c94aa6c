"""Kehou's storage layer: models, sessions, queries, migrations and PTB persistence."""
