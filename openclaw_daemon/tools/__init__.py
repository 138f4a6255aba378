"""Agent tools: their schemas (``spec``), the model families' tool-call formats
(``formats``: how definitions, calls and results read in the model's text), the
GBNF that constrains calls (``grammar``), their implementations (``workspace``,
``exec_tool``, ``web_fetch``) and the runner that checks permissions and runs a
step's calls (``runner``). No llama_cpp here.
"""
