"""Output: plain and JSON rendering, trace charts, stats aggregation. No I/O to the daemon."""
