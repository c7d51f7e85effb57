"""Delivery: getting rows from the training process into a store without blocking it: the background
writer, the local spool for when the store is down, and the `spool` command that inspects it."""
