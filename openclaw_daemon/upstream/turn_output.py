"""What an upstream turn leaves behind: its transcript entries and session index
fields, the model it names, and its cache report (the server's numbers beside our
append-only check of the request)."""

from __future__ import annotations

from typing import Any

from openclaw_daemon.model.base import ModelInfo
from openclaw_daemon.turn import result
from openclaw_daemon.turn.agent_loop import Step
from openclaw_daemon.turn.options import TurnSettings
from openclaw_daemon.turn.persist import turn_entries
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.upstream.model_call import CallResult
from openclaw_daemon.upstream.request_tapes import RequestCheck
from openclaw_daemon.upstream.targets import Target
from openclaw_daemon.upstream.usage import tier_name
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id

API = "openai-completions"


def model_info(target: Target) -> ModelInfo:
    """How a turn's result and the session index name an upstream model."""
    return ModelInfo(
        path=target.provider.url(),
        name=target.model.id,
        n_ctx=target.model.context_window or 0,
        n_ctx_train=0,
        n_params=0,
        size_bytes=0,
        gpu_offload=False,
        chat_template=None,
        n_vocab=0,
        bos_id=-1,
        template_family="server",
        template_source=f"upstream:{target.provider.id}",
        model_id=target.model.id,
    )


def persist(
    store: SessionStore,
    ref: SessionRef,
    entries: list[dict[str, Any]],
    settings: TurnSettings,
    steps: list[Step],
    request_id: str,
    target: Target,
    tapes: SessionTapes,
) -> None:
    """The turn's entries appended to the session, its index entry updated (OpenClaw's
    fields, naming the upstream), and the embedded engine's tape of it dropped."""
    records = turn_entries(
        last_entry_id(entries),
        settings.message,
        steps,
        request_id,
        model=target.model.id,
        provider=target.provider.id,
        api=API,
    )
    store.append(ref, records)
    usage = result.total_usage(steps)
    store.touch(
        ref,
        modelProvider=target.provider.id,
        model=target.model.id,
        contextTokens=target.model.context_window or 0,
        inputTokens=usage["input"],
        outputTokens=usage["output"],
        totalTokens=usage["total"],
        sessionTokens=result.session_tokens(steps),
        cacheRead=usage["cacheRead"],
        cacheWrite=usage["cacheWrite"],
    )
    # The embedded engine's tape of this session lacks these entries now.
    tapes.forget(ref)


def cache_report(target: Target, made: CallResult, check: RequestCheck) -> dict[str, Any]:
    """The turn's cache report: the server's own numbers, and our check of the request."""
    server = made.server
    prompt = server.prompt if server.prompt is not None else len(made.prompt_tokens)
    tier = tier_name(target.provider.id)
    if server.cached is not None:
        summary = f"{target.ref} reused {server.cached:,} of {prompt:,} prompt tokens ({tier})"
    else:
        summary = f"{target.ref} does not report cached tokens ({prompt:,} prompt tokens)"
    if check.previous:
        summary += f"; {check.explain()}"
    return {
        "tier": tier,
        "cachedTokens": server.cached or 0,
        "cachedKnown": server.cached is not None,
        "promptTokens": prompt,
        "usageSource": server.source,
        "tokenCount": "estimate" if made.estimate else "server",
        "restoreMs": None,
        "parkedTokens": 0,
        "notices": [],
        "request": {
            "previousTokens": check.previous,
            "sharedTokens": check.shared,
            "appendOnly": check.append_only,
        },
        "summary": summary,
    }


def compaction_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The turn's ``compaction`` field for an overflow compaction, with its one-line
    summary as the embedded engine's turn report has one."""
    line = (
        f"compacted on overflow on {report['engine']}: {report['tokensBefore']:,} -> "
        f"{report['tokensAfter']:,} tokens; the summary prefilled "
        f"{report['summaryPrefillTokens']:,} tokens"
    )
    return {**report, "summary": line, "summaryText": report["summary"]}
