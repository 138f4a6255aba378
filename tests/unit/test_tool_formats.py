"""Tool-call formats without a model: the Hermes format's prompt section, parser,
rendering and grammar wrap, and ``format_for``'s choice from a chat template.

The grammar check hands the GBNF to llama.cpp's own grammar parser (the
embedded GGUF loaded vocab-only, well under a second): the converter accepting
the schema proves nothing about the rules the format wraps around it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from openclaw_daemon.config import embedded_model_path
from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.model.gguf import read_metadata
from openclaw_daemon.model.llama_engine import Engine
from openclaw_daemon.tools.formats import ToolFormat, format_for
from openclaw_daemon.tools.formats.hermes import HermesFormat
from openclaw_daemon.tools.grammar import MAX_CALLS_PER_STEP, grammar_for
from openclaw_daemon.tools.spec import TOOLS, TOOLS_BY_NAME
from openclaw_sessions.entries import assistant_entry, tool_result_entry, user_entry
from openclaw_sessions.prompt import chat_messages

HERMES: ToolFormat = HermesFormat()
# The tools section's bytes open every prompt: a change re-prefills every
# cached head and misaligns saved tapes, so it must be deliberate.
PROMPT_SECTION_SHA256 = "d566456780926744e65aca733819a380fba5b3b939081f6a86f70c46cc53d5c7"

SAMPLE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "read": {"path": "notes/ü.txt", "offset": 3, "limit": 10},
    "write": {"path": "a.txt", "content": 'line 1\nline "2" <b>?'},
    "edit": {"path": "a.txt", "old": "x", "new": "y\ty"},
    "exec": {"command": "ls -la | head", "timeout": 2.5},
    "search": {"query": "日本", "path": "src"},
    "web_fetch": {"url": "https://example.org/a?b=c"},
}


def template(source: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>")


def test_format_for_picks_hermes_for_the_embedded_model() -> None:
    source = read_metadata(embedded_model_path())["tokenizer.chat_template"]
    chosen = format_for(template(source))
    assert isinstance(chosen, HermesFormat) and chosen.name == "hermes"
    # SmolLM2's ChatML neither wraps results nor refuses the tool role.
    assert chosen.render_result("out") == "<tool_response>\nout\n</tool_response>"
    assert chosen.result_role == "tool"
    assert chosen == HERMES


def test_hermes_follows_what_the_template_does_with_results() -> None:
    wraps = template(
        "{% for m in messages %}{% if m['role'] == 'tool' %}<tool_response>{{ m['content'] }}"
        "</tool_response>{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
    )
    assert format_for(wraps).render_result("out") == "out"
    assert format_for(wraps).result_role == "tool"
    refuses = template(
        "{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('no tools') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    assert format_for(refuses).result_role == "user"
    drops = template(
        "{% for m in messages %}{% if m['role'] != 'tool' %}{{ m['content'] }}{% endif %}"
        "{% endfor %}"
    )
    assert format_for(drops).result_role == "user"


def test_prompt_section_carries_every_schema_and_the_call_shape() -> None:
    section = HERMES.prompt_section(TOOLS)
    lines = section.splitlines()
    inside = lines[lines.index("<tools>") + 1 : lines.index("</tools>")]
    assert [json.loads(line) for line in inside] == [t.definition() for t in TOOLS]
    assert section.endswith(
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
    assert hashlib.sha256(section.encode()).hexdigest() == PROMPT_SECTION_SHA256
    only_read = HERMES.prompt_section([TOOLS_BY_NAME["read"]])
    assert '"name": "read"' in only_read and '"name": "exec"' not in only_read


def test_a_good_call_parses_with_the_text_before_it() -> None:
    reply = HERMES.parse(
        'Let me look.\n<tool_call>\n{"name": "read", "arguments": {"path": "a"}}\n</tool_call>',
        "c",
    )
    assert reply.text == "Let me look."
    [call] = reply.calls
    assert (call.id, call.name, call.arguments, call.error) == ("c_0", "read", {"path": "a"}, None)
    # Some models double-encode the arguments; that much is unambiguous.
    encoded = json.dumps({"name": "read", "arguments": json.dumps({"path": "b"})})
    [call] = HERMES.parse(f"<tool_call>{encoded}</tool_call>", "d").calls
    assert call.arguments == {"path": "b"} and call.error is None
    assert HERMES.parse("just text", "c").calls == []
    assert HERMES.parse("just text", "c").text == "just text"


@pytest.mark.parametrize(
    ("body", "name", "error"),
    [
        ("{not json}", "?", "not valid JSON"),
        ('["read", {}]', "?", 'needs {"name"'),
        ('{"arguments": {}}', "?", 'needs {"name"'),
        ('{"name": "read", "arguments": [1]}', "read", "must be a JSON object"),
        ('{"name": "nope", "arguments": {}}', "nope", "unknown tool; known tools: read, "),
    ],
)
def test_a_malformed_call_is_an_error_never_a_guess(body: str, name: str, error: str) -> None:
    [call] = HERMES.parse(f"<tool_call>{body}</tool_call>", "c").calls
    assert call.name == name
    assert call.error is not None and error in call.error


def test_several_calls_parse_in_order_and_an_exact_repeat_is_dropped() -> None:
    reply = HERMES.parse(
        "First.\n"
        '<tool_call>{"name": "read", "arguments": {"path": "a"}}</tool_call>\n'
        '<tool_call>{"name": "search", "arguments": {"query": "q"}}</tool_call>\n'
        '<tool_call>{"name": "read", "arguments": {"path": "a"}}</tool_call>\n'
        '<tool_call>{"name": "read", "arguments": {"path": "b"}}</tool_call>\n'
        '<tool_call>{"name": "exec", "arguments": {"comm',
        "c",
    )
    assert reply.text == "First."
    assert [(c.id, c.name, c.arguments) for c in reply.calls[:3]] == [
        ("c_0", "read", {"path": "a"}),
        ("c_1", "search", {"query": "q"}),
        ("c_2", "read", {"path": "b"}),
    ]
    assert all(c.error is None for c in reply.calls[:3])
    # The last call was cut off: an error, so the model hears about it.
    assert reply.calls[3].error == "unterminated <tool_call>"


@pytest.mark.parametrize("name", list(SAMPLE_ARGUMENTS))
def test_a_rendered_call_parses_back_to_the_same_call(name: str) -> None:
    arguments = SAMPLE_ARGUMENTS[name]
    text = HERMES.render_call("id0", name, arguments)
    [call] = HERMES.parse(text, "c").calls
    assert (call.name, call.arguments, call.error) == (name, arguments, None)
    assert HERMES.parse(text, "c").text == ""
    # Non-ASCII stays as it is: the transcript's re-render must be the
    # generated text, which a model writes unescaped.
    assert "\\u" not in text


def test_a_transcript_renders_calls_and_results_through_the_format() -> None:
    calls = [
        {"id": f"k{i}", "name": n, "arguments": a}
        for i, (n, a) in enumerate(SAMPLE_ARGUMENTS.items())
    ]
    usage = dict.fromkeys(("input", "output", "cacheRead", "cacheWrite", "total"), 0)
    entries = [user_entry(None, "go")]
    entries.append(
        assistant_entry(
            entries[-1]["id"],
            text="On it.",
            tool_calls=calls,
            usage=usage,
            model="m",
            provider="p",
            api="a",
            stop_reason="toolUse",
        )
    )
    for i, call in enumerate(calls[:2]):
        entries.append(
            tool_result_entry(
                entries[-1]["id"],
                call_id=call["id"],
                tool_name=call["name"],
                text=f"r{i}",
                is_error=False,
            )
        )
    messages = chat_messages(entries, system_prompt="S", tool_text=HERMES)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    reply = HERMES.parse(messages[2]["content"], "c")
    assert reply.text == "On it."
    assert [(c.name, c.arguments) for c in reply.calls] == list(SAMPLE_ARGUMENTS.items())
    assert messages[3]["content"] == (
        "<tool_response>\nr0\n</tool_response>\n<tool_response>\nr1\n</tool_response>"
    )


def test_the_tags_are_what_the_stream_filter_and_stops_use() -> None:
    assert HERMES.tags.call_open == "<tool_call>"
    assert HERMES.tags.call_close == "</tool_call>"
    assert HERMES.tags.result_stops == ["<tool_response>", "</tool_response>"]
    assert HERMES.render_call("x", "read", {}).startswith(HERMES.tags.call_open)


@pytest.fixture(scope="module")
def llama_accepts() -> Iterator[Callable[[str], bool]]:
    """Whether llama.cpp's grammar parser accepts a GBNF (the embedded model's
    vocabulary, loaded without weights)."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(embedded_model_path()).encode(), params)
    assert model
    vocab = llama_cpp.llama_model_get_vocab(model)

    def accepts(gbnf: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    yield accepts
    llama_cpp.llama_model_free(model)


@pytest.mark.parametrize("choice", ["required", *TOOLS_BY_NAME])
def test_the_grammar_wrap_is_gbnf_llama_cpp_accepts(
    choice: str, llama_accepts: Callable[[str], bool]
) -> None:
    assert not llama_accepts('root ::= "a" undefined')  # the check can fail
    gbnf = grammar_for(choice, Engine.schema_to_gbnf, ["a.txt"], ["http://h/x"], tool_format=HERMES)
    assert gbnf is not None and llama_accepts(gbnf)
    root = gbnf.splitlines()[0]
    assert root == (
        'root ::= "<tool_call>\\n" call "\\n</tool_call>" '
        f'("\\n" "<tool_call>\\n" call "\\n</tool_call>"){{0,{MAX_CALLS_PER_STEP - 1}}}'
    )
    assert any(line.startswith("call ::=") for line in gbnf.splitlines())


@pytest.mark.parametrize("family", ["llama3", "mistral", "gemma"])
def test_every_family_s_grammar_is_gbnf_llama_cpp_accepts(
    family: str, llama_accepts: Callable[[str], bool]
) -> None:
    from openclaw_daemon.tools.formats import gemma, llama3, mistral

    chosen: ToolFormat = {
        "llama3": llama3.FORMAT,
        "mistral": mistral.FORMAT,
        "gemma": gemma.FORMAT,
    }[family]
    for choice in ["required", "read", "exec"]:
        gbnf = grammar_for(choice, Engine.schema_to_gbnf, [], [], tool_format=chosen)
        assert gbnf is not None and llama_accepts(gbnf), (family, choice)
