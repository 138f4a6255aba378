"""OpenClaw edge daemon package. Its subpackages are the layers, imported one way
(a test walks the imports and refuses cycles and upward imports):

- ``wire``: frames, typed messages, the error tree, ids and the client. Standard
  library and msgpack only: the CLI imports it on every start.
- ``config``, ``state_dirs``: the environment and the state directory (stdlib only).
- ``observability``: spans, trace records, metrics.
- ``model``: the engine interface and its implementations (llama_cpp lives only in
  ``model.llama_engine``), chat templates, token tapes, GGUF metadata.
- ``cache``: the prefix cache over L1 (live), L2 (RAM) and L3 (disk).
- ``tools``: tool schemas, call formats, the tools themselves.
- ``turn``: one turn: the agent loop, compaction, persistence, results.
- ``serve``: the daemon process: transport, handlers, scheduler, composition root.

This init stays empty of imports: anything here is paid on every CLI start.
"""
