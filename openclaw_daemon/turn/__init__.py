"""One agent turn on an engine: the pipeline, model calls, the agent loop,
compaction, persistence of transcripts and tapes, and replayed results."""
