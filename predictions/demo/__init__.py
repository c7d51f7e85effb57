"""The demo: a tiny model built from a config, trained on a toy task, feeding the embedded store."""
