"""The model: the engine interface, the llama.cpp engine (the only ``llama_cpp``
import), chat templates, token tapes, streaming text and GGUF metadata."""
