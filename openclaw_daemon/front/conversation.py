"""OpenAI chat messages as this model's template messages, and the keys that find
a conversation again.

A client of the OpenAI front sends the whole conversation every time, with no
session id. What makes its next request a cache hit is the token tape: the
ids the model generated for each reply, which re-tokenizing the reply's text
need not give back. So each reply's tape is registered under a key of the
conversation up to and including that reply (``prefix_keys``), and a request
continues the tape of its longest registered prefix; only the messages after
it are rendered and tokenized.

The key is a chain hash over the tools and each message, normalised the way
clients rewrite what they send back: content null or "" or text parts alike,
surrounding whitespace dropped, a reply with calls named by its calls alone
(many clients send its text back as null), call arguments compared as JSON
values, call ids left out (some clients rename them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from openclaw_daemon.model.chat_template import ChatMessage
from openclaw_daemon.tools.formats.base import ToolFormat
from openclaw_daemon.tools.spec import ToolSpec
from openclaw_daemon.wire.chat_requests import ChatCall, ChatTool, ChatTurnMessage
from openclaw_sessions.prompt import head


def tool_specs(tools: Sequence[ChatTool]) -> list[ToolSpec]:
    return [ToolSpec(tool.name, tool.description, tool.parameters) for tool in tools]


def tools_section(tools: Sequence[ChatTool], fmt: ToolFormat) -> str:
    """The client's tool definitions as the model's format writes them into the head."""
    return fmt.prompt_section(tool_specs(tools)) if tools else ""


def template_messages(
    messages: Sequence[ChatTurnMessage], fmt: ToolFormat, *, section: str, at_start: bool
) -> list[ChatMessage]:
    """``messages`` as template messages. ``at_start``: they open the conversation,
    so the tools section goes into the first system message (or one of its own).
    A run of ``tool`` messages becomes the format's results message(s)."""
    out: list[ChatMessage] = []
    if at_start and section and (not messages or messages[0].role != "system"):
        out.append({"role": "system", "content": section})
    results: list[str] = []
    call_ids: list[str] = []
    for index, message in enumerate(messages):
        if message.role == "tool":
            results.append(fmt.render_result(message.content))
            call_ids.append(message.tool_call_id)
            continue
        if results:
            out += fmt.results_messages(results, call_ids)
            results, call_ids = [], []
        if message.role == "system" and at_start and index == 0:
            out.append({"role": "system", "content": head(message.content, section)})
        elif message.role == "assistant":
            calls = [fmt.render_call(c.id, c.name, c.arguments) for c in message.calls]
            out.append(
                {"role": "assistant", "content": "\n".join(filter(None, [message.content, *calls]))}
            )
        else:
            out.append({"role": message.role, "content": message.content})
    if results:
        out += fmt.results_messages(results, call_ids)
    return out


def _canonical(message: ChatTurnMessage) -> bytes:
    calls = [[c.name, c.arguments] for c in message.calls]
    # Many clients send a reply with calls back as content null, whatever text came
    # before the calls: the calls alone name it.
    content = "" if calls else message.content.strip()
    return json.dumps(
        [message.role, content, calls], sort_keys=True, separators=(",", ":")
    ).encode()


def prefix_keys(
    tools: Sequence[ChatTool], messages: Sequence[ChatTurnMessage], *, salt: str
) -> list[str]:
    """``keys[k]`` names the conversation's first ``k`` messages (with its tools and
    the model, ``salt``); ``len(messages) + 1`` keys."""
    digest = hashlib.sha256(salt.encode())
    digest.update(
        json.dumps(
            [[t.name, t.description, t.parameters] for t in tools],
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    )
    keys = [digest.hexdigest()]
    for message in messages:
        digest.update(hashlib.sha256(_canonical(message)).digest())
        keys.append(digest.copy().hexdigest())
    return keys


def reply_message(text: str, calls: Sequence[ChatCall]) -> ChatTurnMessage:
    """The assistant message as the client will send it back."""
    return ChatTurnMessage("assistant", text, tuple(calls))
