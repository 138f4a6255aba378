"""Tool-call tags that are control tokens (Mistral's ``[TOOL_CALLS]``, Llama 3's
``<|python_tag|>``): the decoder spells them so the parser sees them, the tools
section's go into the prompt as the control token (markup), Mistral calls keep
the id the model wrote, and ``models show`` names the template and tool format
from the GGUF header. On the fake engine, given those control tokens."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from openclaw_cli.commands.models import tool_format_of
from openclaw_daemon.model import catalog, markup
from openclaw_daemon.model.builtin_templates import BUILTIN
from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.model.fake import N_VOCAB, FakeEngine
from openclaw_daemon.model.tape import TapeBuilder
from openclaw_daemon.model.text_stream import control_ids
from openclaw_daemon.tools.formats import hermes, llama3, mistral
from openclaw_daemon.tools.spec import TOOLS
from openclaw_daemon.turn.model_calls import ModelCalls
from tests.unit.fake_daemon import pipeline_on
from tests.unit.test_models import GEMMA3

TEMPLATES = Path(__file__).parent / "templates"
N_CTX = 16384
MISTRAL_CONTROL = mistral.TAGS.control


def _mistral_engine(replies: list[str]) -> FakeEngine:
    engine = FakeEngine(replies, n_ctx=N_CTX, control=MISTRAL_CONTROL)
    engine.template = ChatTemplate(BUILTIN["mistral"], bos_token="", eos_token="</s>")
    return engine


def _ignore(tokens: int, seconds: float) -> None:
    pass


def _id_of(engine: FakeEngine, tag: str) -> int:
    (token,) = engine.tokenize(tag, add_bos=False, special=True)
    return token


def test_control_ids_are_the_tags_that_are_one_control_token_here() -> None:
    engine = FakeEngine(control=("[TOOL_CALLS]",))
    tool_calls = _id_of(engine, "[TOOL_CALLS]")
    assert tool_calls == N_VOCAB and engine.info.n_vocab == N_VOCAB + 1
    # As llama.cpp's: a control token decodes to nothing without ``special``.
    assert engine.detokenize([tool_calls]) == b""
    assert engine.detokenize([tool_calls], special=True) == b"[TOOL_CALLS]"
    # A tag that is several tokens is text already; the fake has no [TOOL_RESULTS].
    assert control_ids(engine, ["[TOOL_CALLS]", "[TOOL_RESULTS]", "<tool_call>"]) == {tool_calls}
    assert control_ids(FakeEngine(), mistral.TAGS.control) == frozenset()
    # Only the tags that are tokens here count, for the decoder and for the
    # tools section's markup alike (a tag the vocabulary lacks splits nothing).
    cases: list[tuple[FakeEngine, dict[str, int]]] = [
        (FakeEngine(), {}),
        (FakeEngine(control=("</tool_call>",)), {"</tool_call>": N_VOCAB}),
    ]
    for engine, expected in cases:
        calls = ModelCalls(engine, prefill_batch=64, observe_prefill=_ignore, tags=hermes.TAGS)
        assert (calls.control, calls.spelled) == (expected, frozenset(expected.values()))


def test_a_mistral_reply_s_tool_calls_token_reaches_the_parser(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the launch code is 4242\n")
    call = {"name": "read", "arguments": {"path": "notes.txt"}, "id": "abcDEF123"}
    reply = f"[TOOL_CALLS][{json.dumps(call)}]"
    engine = _mistral_engine([reply, "The code is 4242."])
    with pipeline_on(engine) as harness:
        result = harness.turn("what is the code? [TOOL_CALLS]", cwd=str(tmp_path))
        streamed = harness.streamed_text()
    # The model generated [TOOL_CALLS] as its one control id...
    first_reply = engine.calls[1].prompt[len(engine.prefills[0].prompt) :]
    tool_calls = _id_of(engine, "[TOOL_CALLS]")
    assert first_reply[0] == tool_calls
    # ...and the parser saw it: the call ran, under the id the model wrote.
    (ran,) = result["steps"][0]["toolCalls"]
    assert (ran["id"], ran["name"], ran["isError"]) == ("abcDEF123", "read", False)
    assert "the launch code is 4242" in ran["result"]
    assert streamed == "The code is 4242."  # the call's JSON was never shown
    # The tape kept the generated ids: the second call prefilled only the result.
    second = engine.prefills[1]
    reply_ids = engine.tokenize(reply, add_bos=False, special=True)
    assert tuple(first_reply[: len(reply_ids)]) == tuple(reply_ids)
    assert second.reused == len(engine.prefills[0].prompt) + len(reply_ids)
    seen = engine.detokenize(list(second.prompt), special=True).decode()
    assert '"call_id": "abcDEF123"}[/TOOL_RESULTS]' in seen
    # The user's "[TOOL_CALLS]" stayed text; the tools section's tags are markup.
    prompt = engine.prefills[0].prompt
    assert list(prompt).count(tool_calls) == 0
    assert list(prompt).count(_id_of(engine, "[AVAILABLE_TOOLS]")) == 1
    assert list(prompt).count(_id_of(engine, "[/AVAILABLE_TOOLS]")) == 1


def test_llama3_s_python_tag_is_spelled_for_the_parser_and_hidden_from_the_user(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    engine = FakeEngine(
        ['Sure.<|python_tag|>{"name": "read", "parameters": {"path": "a.txt"}}', "alpha."],
        n_ctx=N_CTX,
        control=llama3.TAGS.control,
    )
    engine.template = ChatTemplate(BUILTIN["llama3"], bos_token="", eos_token="<|eot_id|>")
    with pipeline_on(engine) as harness:
        result = harness.turn("read a.txt", cwd=str(tmp_path))
        streamed = harness.streamed_text()
    (ran,) = result["steps"][0]["toolCalls"]
    assert (ran["name"], ran["arguments"], ran["isError"]) == ("read", {"path": "a.txt"}, False)
    assert streamed == "Sure.alpha."
    assert "python_tag" not in result["steps"][0]["text"]


def test_mistral_calls_keep_the_model_s_id_and_derive_one_only_without() -> None:
    fmt = mistral.FORMAT
    text = (
        '[TOOL_CALLS][{"name": "read", "arguments": {"path": "a"}, "id": "Zq7Tn03Kx"}, '
        '{"name": "read", "arguments": {"path": "b"}}, '
        '{"name": "read", "arguments": {"path": "c"}, "id": "Zq7Tn03Kx"}, '
        '{"name": "read", "arguments": {"path": "d"}, "id": "short"}]'
    )
    calls = fmt.parse(text, "call_ab").calls
    ids = [c.id for c in calls]
    assert ids[0] == "Zq7Tn03Kx"
    # No id, a taken one, an invalid one: derived, 9 alphanumerics, stable, distinct.
    assert ids[1:] == [mistral.mistral_id(f"call_ab_{n}") for n in (1, 2, 3)]
    assert all(len(i) == 9 and i.isalnum() for i in ids) and len(set(ids)) == 4
    assert [c.id for c in fmt.parse(text, "call_ab").calls] == ids
    # The call renders, and its result answers, with that same id.
    assert '"id": "Zq7Tn03Kx"' in fmt.render_call(ids[0], "read", {"path": "a"})
    [message] = fmt.results_messages([fmt.render_result("r")], [ids[0]])
    assert message["tool_call_id"] == "Zq7Tn03Kx"
    assert mistral.mistral_id("call_ab_1") != "call_ab_1"  # ours are not Mistral ids


def test_nemo_s_tools_section_goes_in_as_control_tokens_and_user_text_stays_text() -> None:
    template = ChatTemplate(
        (TEMPLATES / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text(),
        bos_token="<s>",
        eos_token="</s>",
    )
    engine = FakeEngine(control=MISTRAL_CONTROL)
    section = mistral.FORMAT.prompt_section(TOOLS)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"{section}\n\nBe brief."},
        # Nemo's template writes the system message into the last user turn.
        {"role": "user", "content": "quoting [AVAILABLE_TOOLS][]"},
    ]
    opens = _id_of(engine, "[AVAILABLE_TOOLS]")
    trusted = markup.Trusted(section, MISTRAL_CONTROL)
    lifted = TapeBuilder(template, engine, add_bos=False, trusted=trusted).from_messages(messages)
    plain = TapeBuilder(template, engine, add_bos=False).from_messages(messages)
    assert lifted.text == plain.text and section in lifted.text
    assert lifted.tokens.count(opens) == 1 and plain.tokens.count(opens) == 0
    assert lifted.tokens.count(_id_of(engine, "[/AVAILABLE_TOOLS]")) == 1
    assert engine.detokenize(lifted.tokens, special=True).decode() == lifted.text
    assert lifted.tokens[-len(b"[AVAILABLE_TOOLS][][/INST]") :] == list(
        b"[AVAILABLE_TOOLS][][/INST]"
    )


def _gguf(path: Path, metadata: dict[str, Any]) -> Path:
    """A header-only GGUF v3 file (strings, ints, string arrays)."""

    def text(value: str) -> bytes:
        data = value.encode()
        return struct.pack("<Q", len(data)) + data

    body = b""
    for key, value in metadata.items():
        body += text(key)
        if isinstance(value, str):
            body += struct.pack("<I", 8) + text(value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(text(v) for v in value)
        else:
            body += struct.pack("<Ii", 5, value)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)) + body)
    return path


def test_models_show_names_the_template_and_tool_format_from_the_header(tmp_path: Path) -> None:
    def facts(name: str, metadata: dict[str, Any], **kw: Any) -> dict[str, Any]:
        path = _gguf(tmp_path / name, metadata)
        return catalog.model_facts(path, n_ctx=4096, tool_format=tool_format_of, **kw)

    gemma = facts("g.gguf", GEMMA3)
    assert (gemma["templateFamily"], gemma["toolFormat"]) == ("gemma", "gemma")
    assert gemma["templateSource"] == "builtin:gemma (no template in the GGUF)"
    llama = {k.replace("gemma3", "llama"): v for k, v in GEMMA3.items()}
    llama["general.architecture"] = "llama"
    del llama["llama.attention.sliding_window"]
    # The vocabulary decides Llama 3 over ChatML (a long one: skipped, scanned).
    vocab = [f"t{i}" for i in range(5000)]
    l3 = facts("l3.gguf", {**llama, "tokenizer.ggml.tokens": [*vocab, "<|eot_id|>"]})
    assert (l3["templateFamily"], l3["toolFormat"]) == ("llama3", "llama3")
    chatml = facts("c.gguf", {**llama, "tokenizer.ggml.tokens": vocab})
    assert (chatml["templateFamily"], chatml["toolFormat"]) == ("chatml", "hermes")
    nemo = (TEMPLATES / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text()
    embedded = facts("m.gguf", {**llama, "tokenizer.chat_template": nemo})
    assert (embedded["templateSource"], embedded["toolFormat"]) == ("embedded", "mistral")
    forced = facts("f.gguf", GEMMA3, chat_template="chatml")
    assert (forced["templateSource"], forced["toolFormat"]) == ("override:chatml", "hermes")
    assert "toolFormat" not in catalog.model_facts(tmp_path / "g.gguf", n_ctx=4096)
