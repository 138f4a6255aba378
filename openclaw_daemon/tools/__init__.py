"""Agent tools: their schemas and call format (``spec``), the GBNF that constrains
calls (``grammar``), their implementations (``workspace``, ``exec_tool``,
``web_fetch``) and the runner that checks permissions and runs a step's calls
(``runner``). No llama_cpp here.
"""
