"""Upstream engines: OpenAI-compatible servers (llama-server, vLLM, ...) over HTTP."""
