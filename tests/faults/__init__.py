"""The fault suite's harness: kill -9 campaign, concurrent clients, guarded
calls into the other suites, and the report ``scripts/faults`` writes.

Everything here drives the real ``openclaw`` CLI and the real daemon in temp
state dirs, over the Unix socket only; every loop is bounded in count and time.
"""
