"""OpenClaw edge daemon package.

This package init must stay empty of imports: the CLI imports
``openclaw_daemon.protocol``, ``.config`` and ``.errors``, and anything imported
here would be paid on every CLI start. llama_cpp lives only in ``engine``.
"""
