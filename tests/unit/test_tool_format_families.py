"""Each family's tool-call format against its REAL chat template
(tests/unit/templates/, see the README there): a call rendered by the format is
the text the template itself writes for that call, it parses back, and results
go in the role and shape the template renders. Also the grammar's bounds and
the builtin templates chosen by architecture."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.model.builtin_templates import BUILTIN, choose_template, family_of
from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.model.llama_engine import Engine
from openclaw_daemon.tools.formats import format_for
from openclaw_daemon.tools.formats.mistral import mistral_id
from openclaw_daemon.tools.grammar import grammar_for, int_range
from openclaw_daemon.wire.errors import BadRequestError, ModelError

TEMPLATES = Path(__file__).parent / "templates"
ARGS: dict[str, Any] = {"path": "notes/ü.txt", "offset": 3, "limit": 10}


def real(name: str) -> ChatTemplate:
    source = (TEMPLATES / name).read_text()
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>")


LLAMA = "meta-llama-Llama-3.1-8B-Instruct.jinja"
NEMO = "mistralai-Mistral-Nemo-Instruct-2407.jinja"
QWEN = "Qwen-Qwen2.5-7B-Instruct.jinja"
GEMMA = "google-gemma-3-it.jinja"


@pytest.mark.parametrize(
    ("name", "family"), [(LLAMA, "llama3"), (NEMO, "mistral"), (QWEN, "hermes"), (GEMMA, "gemma")]
)
def test_the_format_is_chosen_from_what_the_template_spells(name: str, family: str) -> None:
    assert format_for(real(name)).name == family


def _render_both(name: str, structured: dict[str, Any], call_text: str) -> tuple[str, str]:
    template = real(name)
    head = [{"role": "system", "content": "S"}, {"role": "user", "content": "read it"}]
    ours = template.render(
        [*head, {"role": "assistant", "content": call_text}], add_generation_prompt=False
    )
    theirs = template.render([*head, structured], add_generation_prompt=False)
    return ours, theirs


def test_llama3_calls_are_what_meta_s_template_writes_and_parse_back() -> None:
    fmt = format_for(real(LLAMA))
    text = fmt.render_call("c1", "read", ARGS)
    structured = {
        "role": "assistant",
        "tool_calls": [{"function": {"name": "read", "arguments": ARGS}}],
    }
    ours, theirs = _render_both(LLAMA, structured, text)
    assert ours == theirs and '{"name": "read", "parameters": {"path": "notes/ü.txt"' in ours
    [call] = fmt.parse("Sure. " + text, "c").calls
    assert (call.name, call.arguments, call.error) == ("read", ARGS, None)
    assert fmt.parse("Sure. " + text, "c").text == "Sure."
    [call] = fmt.parse('<|python_tag|>{"name": "nope", "parameters": {}}', "c").calls
    assert call.error is not None and "unknown tool" in call.error
    # Results go under Meta's ipython header.
    [message] = fmt.results_messages([fmt.render_result("r0")], ["c1"])
    rendered = real(LLAMA).render(
        [{"role": "user", "content": "u"}, message], add_generation_prompt=True
    )
    assert message["role"] == "ipython"
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"r0"<|eot_id|>' in rendered


def test_mistral_calls_are_what_nemo_s_template_writes_and_results_carry_their_id() -> None:
    fmt = format_for(real(NEMO))
    text = fmt.render_call("call_ab_0", "read", ARGS)
    call_id = mistral_id("call_ab_0")
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", call_id) and call_id == mistral_id("call_ab_0")
    structured = {
        "role": "assistant",
        "tool_calls": [{"id": call_id, "function": {"name": "read", "arguments": ARGS}}],
    }
    ours, theirs = _render_both(NEMO, structured, text)
    assert ours == theirs and "[TOOL_CALLS][{" in ours
    [call] = fmt.parse(text, "c").calls
    assert (call.name, call.arguments, call.error) == ("read", ARGS, None)
    bad = fmt.parse('[TOOL_CALLS][{"name": "read", "argu', "c").calls
    assert bad[0].error is not None and "not a valid JSON list" in bad[0].error
    messages = fmt.results_messages(
        [fmt.render_result('a "quoted" r0'), fmt.render_result("r1")], ["call_ab_0", "call_ab_1"]
    )
    rendered = real(NEMO).render(
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": text}, *messages],
        add_generation_prompt=False,
    )
    assert (
        f'[TOOL_RESULTS]{{"content": "a \\"quoted\\" r0", "call_id": "{call_id}"}}[/TOOL_RESULTS]'
        in rendered
    )
    assert f'"call_id": "{mistral_id("call_ab_1")}"' in rendered


def test_hermes_calls_are_what_qwen_s_template_writes() -> None:
    fmt = format_for(real(QWEN))
    text = fmt.render_call("c1", "read", ARGS)
    structured = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "read", "arguments": ARGS}}],
    }
    ours, theirs = _render_both(QWEN, structured, text)
    assert ours == theirs
    # Qwen's template wraps results itself, in a user turn.
    assert fmt.render_result("r") == "r" and fmt.result_role == "tool"


def test_gemma_results_go_back_as_a_user_turn_the_template_accepts() -> None:
    template = real(GEMMA)
    fmt = format_for(template)
    assert fmt.result_role == "user"
    # A tool message would open a "tool" turn, a role Gemma was never trained on.
    as_tool = template.render(
        [{"role": "user", "content": "u"}, {"role": "tool", "content": "t"}],
        add_generation_prompt=True,
    )
    assert "<start_of_turn>tool\nt" in as_tool
    call = fmt.render_call("c1", "read", ARGS)
    results = fmt.results_messages([fmt.render_result("r0")], ["c1"])
    rendered = template.render(
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": call}, *results],
        add_generation_prompt=True,
    )
    assert rendered.endswith(
        "<start_of_turn>user\n<tool_response>\nr0\n</tool_response><end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    [parsed] = fmt.parse(call, "c").calls
    assert (parsed.name, parsed.arguments) == ("read", ARGS)


def _as_regex(gbnf_alternatives: str) -> str:
    return gbnf_alternatives.replace('"', "").replace(" ", "")


@pytest.mark.parametrize(("low", "high"), [(1, 10**9), (0, 600), (37, 4521), (5, 5)])
def test_int_range_matches_exactly_the_range(low: int, high: int) -> None:
    pattern = re.compile(_as_regex(int_range(low, high)))
    probes = {low, high, low - 1, high + 1, 0, 9, 10, 99, 100, 599, 601, 10**9 + 1, 10**15}
    probes |= {low + (high - low) // 3, high - 1}
    for number in sorted(p for p in probes if p >= 0):
        assert bool(pattern.fullmatch(str(number))) == (low <= number <= high), number
    assert not pattern.fullmatch("0" + str(max(low, 1)))  # no leading zeros


def test_the_read_grammar_bounds_offset_limit_and_path() -> None:
    gbnf = grammar_for("read", Engine.schema_to_gbnf, [], [], tool_format=format_for(real(GEMMA)))
    assert gbnf is not None
    offset = next(line for line in gbnf.splitlines() if line.startswith("arguments-offset ::="))
    rule = re.fullmatch(r"arguments-offset ::= \(\((.*)\) space\)", offset)
    assert rule is not None
    pattern = re.compile(_as_regex(rule.group(1)))
    assert pattern.fullmatch("1000000000") and pattern.fullmatch("3")
    assert not pattern.fullmatch("1000000000000000") and not pattern.fullmatch("0")
    assert "integral-part" not in gbnf  # no unbounded integer left
    assert "bounded-char{0,4096}" in gbnf


def test_templates_are_chosen_by_architecture_without_an_embedded_one() -> None:
    def no_token(text: str) -> bool:
        return False

    def eot(text: str) -> bool:
        return text == "<|eot_id|>"

    gemma = choose_template({"general.architecture": "gemma3"}, has_token=no_token)
    assert (gemma.family, gemma.origin) == ("gemma", "builtin:gemma (no template in the GGUF)")
    assert gemma.source == (TEMPLATES / GEMMA).read_text()  # Google's own, verbatim
    assert choose_template({"general.architecture": "llama"}, has_token=eot).family == "llama3"
    assert choose_template({"general.architecture": "llama"}, has_token=no_token).family == "chatml"
    assert (
        choose_template({"general.architecture": "mistral"}, has_token=no_token).family == "mistral"
    )
    embedded = choose_template(
        {"general.architecture": "gemma3", "tokenizer.chat_template": "<|im_start|>x"},
        has_token=no_token,
    )
    assert (embedded.origin, embedded.family) == ("embedded", "chatml")
    forced = choose_template({"tokenizer.chat_template": "x"}, has_token=no_token, override="gemma")
    assert (forced.origin, forced.family) == ("override:gemma", "gemma")
    with pytest.raises(BadRequestError, match="neither a builtin template nor a readable file"):
        choose_template({}, has_token=no_token, override="/no/such.jinja")
    for name, source in BUILTIN.items():  # each builtin's markup names its own family
        assert family_of(source) == name
        assert (
            format_for(ChatTemplate(source, bos_token="", eos_token="")).name
            == {"chatml": "hermes", "gemma": "gemma", "llama3": "llama3", "mistral": "mistral"}[
                name
            ]
        )


def test_a_template_that_fails_names_the_model_and_the_fallback(tmp_path: Path) -> None:
    template = ChatTemplate(
        "{{ raise_exception('nope') }}",
        bos_token="",
        eos_token="",
        label="Gemma 3 270m (file:/x.jinja)",
        fallback="Start the daemon with --chat-template gemma",
    )
    with pytest.raises(ModelError) as caught:
        template.render([{"role": "user", "content": "u"}], add_generation_prompt=True)
    assert "Gemma 3 270m (file:/x.jinja) failed to render: nope" in caught.value.message
    assert "--chat-template gemma" in caught.value.hint
    assert json.loads(json.dumps(caught.value.message))  # plain text


def test_a_strictly_alternating_template_gets_repeated_user_turns_joined() -> None:
    """Gemma's template refuses two user turns in a row; a transcript has them
    when tool results (a user turn for Gemma) are followed by the next message,
    as after a turn stopped by --max-steps. They are rendered as one turn."""
    from openclaw_daemon.model.builtin_templates import GEMMA_TEMPLATE
    from openclaw_daemon.model.chat_template import ChatTemplate

    template = ChatTemplate(GEMMA_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Read a.txt"},
        {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
        {"role": "user", "content": "<tool_response>hello</tool_response>"},
        {"role": "user", "content": "And now?"},
    ]
    rendered = template.render(messages, add_generation_prompt=True)
    assert rendered.endswith(
        "<start_of_turn>user\n<tool_response>hello</tool_response>\n\nAnd now?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    # A template that accepts them keeps them apart (the prompt stays append-only).
    chatml = ChatTemplate(None, bos_token="", eos_token="<|im_end|>")
    assert chatml.render(messages, add_generation_prompt=False).count("<|im_start|>user") == 3
