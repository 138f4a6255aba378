"""The prefix cache: the live context (L1), parked snapshots in RAM (L2) and on
disk (L3), one radix index over both, and the report of each turn's outcome."""
