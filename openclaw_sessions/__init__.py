"""Session transcripts, stored as OpenClaw stores them, and prompt policy.

Pure Python: no llama_cpp, no sockets. The daemon writes through this package;
the CLI reads through it directly (listing sessions needs no daemon).
"""
