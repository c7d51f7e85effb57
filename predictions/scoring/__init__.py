"""Scoring: the built-in metric registry, the user's scorers and the names they may take, ready-made
scorers. Depends on nothing above it, so the store and the dashboard can use it without torch."""
