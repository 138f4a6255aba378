"""Streaming text: UTF-8 split across tokens and stop strings across tokens."""

from __future__ import annotations

from openclaw_daemon.model.text_stream import TextStream


def test_multibyte_character_split_across_tokens_is_held_until_complete() -> None:
    stream = TextStream([])
    euro = "€".encode()
    assert stream.push(b"a" + euro[:1]) == "a"
    assert stream.push(euro[1:]) == "€"
    assert stream.finish() == ""
    assert stream.text == "a€"


def test_stop_string_spanning_tokens_is_never_printed() -> None:
    stream = TextStream(["END"])
    shown = stream.push(b"hello E")
    shown += stream.push(b"N")
    assert not stream.stopped
    shown += stream.push(b"D and more")
    assert stream.stopped
    shown += stream.finish()
    assert shown == "hello " == stream.text


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    stream = TextStream(["END"])
    assert stream.push(b"E") == ""
    assert stream.push(b"gg") == "Egg"
    assert stream.finish() == ""
