"""Spans, per-turn trace records and metrics. Light enough for the CLI, which
reads trace records and renders them."""
