"""The contract between the CLI and the daemon, used by both sides: framing,
typed messages, the error tree, OpenClaw's id rules and the client.

Imports nothing but the standard library and msgpack, and nothing else of the
daemon: the CLI pays for this package on every start.
"""
