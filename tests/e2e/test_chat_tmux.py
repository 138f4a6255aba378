"""``openclaw tui`` / ``chat`` in a real terminal: tmux runs it, send-keys types, and
capture-pane reads the screen. Streaming replies with the first-token time, slash
commands, Ctrl-C cancelling a reply (the session goes on), history recall, a
continued line, the history shown on re-entry, and Ctrl-D leaving."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import OPENCLAW, Cli, make_state_dir

pytestmark = pytest.mark.e2e
# tmux is a requirement of the suite (README), not an optional extra: without it
# these tests fail, naming it, rather than skip.
assert shutil.which("tmux"), "tests/e2e/test_chat_tmux.py needs tmux (apt install tmux)"


class Pane:
    def __init__(self, cli: Cli, *args: str, cwd: Path | None = None) -> None:
        self.name = f"oc-{uuid.uuid4().hex[:8]}"
        wanted = ("OPENCLAW_", "PATH", "HOME", "LANG")
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in cli.env.items() if k.startswith(wanted))
        command = f"env {env} {shlex.quote(str(OPENCLAW))} {' '.join(args)}; sleep 30"
        if cwd is not None:  # the tools' workspace is the chat's working directory
            command = f"cd {shlex.quote(str(cwd))} && {command}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "160", "-y", "50", command],
            check=True,
        )

    def screen(self) -> str:
        shown = subprocess.run(
            ["tmux", "capture-pane", "-p", "-J", "-S", "-200", "-t", self.name],
            capture_output=True,
            text=True,
        )
        return shown.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        self.keys("Enter")

    def wait(self, text: str, count: int = 1, within: float = 120) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} x{count} not on the screen:\n{self.screen()}")

    def ended(self, within: float = 20) -> bool:
        """The chat process left (the pane's command is the ``sleep`` after it)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            shown = subprocess.run(
                ["tmux", "list-panes", "-t", self.name, "-F", "#{pane_current_command}"],
                capture_output=True,
                text=True,
            )
            if shown.stdout.strip() == "sleep":
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def chat_cli() -> Iterator[Cli]:
    runner = Cli(make_state_dir(), {})
    runner.run("daemon", "start", timeout=300)
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


def _user_messages(cli: Cli, session: str) -> list[str]:
    from openclaw_sessions.prompt import message_text

    shown = json.loads(cli.run("sessions", "show", session, "--json").stdout)
    messages = [e["message"] for e in shown["entries"] if e.get("type") == "message"]
    return [message_text(m) for m in messages if m.get("role") == "user"]


def test_a_chat_in_tmux(chat_cli: Cli) -> None:
    pane = Pane(chat_cli, "tui", "--session-id", "tm", "--max-tokens", "200")
    try:
        pane.wait("openclaw chat: session tm")
        pane.type("Say hi in three words.")
        pane.wait("(first token", 1)
        assert "cached" in pane.screen() and "ms" in pane.screen()
        pane.type("/status")
        pane.wait("[session tm · model")
        pane.type("Write a very long story about a dragon and a knight.")
        pane.wait(">>> Write a very long story")
        # Cancel as soon as some of the reply has streamed (on an idle machine the
        # 200 tokens take ~1.5 s).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tail = pane.screen().split(">>> Write a very long story", 1)[1]
            if len(tail.split("]", 1)[-1].strip()) > 20:
                break
            time.sleep(0.05)
        pane.keys("C-c")
        pane.wait("[cancelled]")
        pane.type("Say yes.")
        pane.wait("(first token", 2)
        pane.keys("Up")  # history recall: the last message again
        pane.keys("Enter")
        pane.wait("(first token", 3)
        pane.type("First line \\")
        pane.type("Reply OK.")
        pane.wait("(first token", 4)
        pane.type("/trace")
        pane.wait("model.decode")
        pane.type("/nonsense")
        pane.wait("[unknown command /nonsense")
        pane.type("/model")
        pane.wait("[model smollm2")
        pane.type("/allow write")
        pane.wait("[allowed: write]")
        pane.type("/allow bogus")
        pane.wait("[unknown tool bogus")
        pane.type("/compact")
        # The daemon's answer, relayed: a short session may be refused as not
        # shrinking (nothing written), which is its own clear message.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            screen = pane.screen()
            if "[compacted:" in screen or "would not shrink it" in screen:
                break
            time.sleep(0.5)
        assert "[compacted:" in screen or "nothing was written]" in screen, screen
        pane.keys("C-d")
        assert pane.ended(), pane.screen()
    finally:
        pane.close()
    users = _user_messages(chat_cli, "tm")
    assert users[0] == "Say hi in three words."
    assert users[-3:] == ["Say yes.", "Say yes.", "First line \nReply OK."]
    # Re-entering the session shows its recent history (the last six messages).
    again = Pane(chat_cli, "chat", "--session-id", "tm")
    try:
        screen = again.wait(">>> First line")
        assert "Reply OK." in screen and ">>> Say yes." in screen
        again.type("/reset")
        again.wait("[session reset: now")
        again.type("/new")
        again.wait("[new session chat-")
        again.type("/exit")
        assert again.ended(), again.screen()
    finally:
        again.close()


def test_chat_needs_a_terminal(chat_cli: Cli) -> None:
    proc = chat_cli.run("tui", check=False)
    assert proc.returncode == 1 and "needs a terminal" in proc.stderr


def test_a_tool_that_changes_things_asks_first(chat_cli: Cli, tmp_path: Path) -> None:
    """write (forced by --tool-choice, so the small model calls it every reply) asks:
    no leaves the workspace as it was, yes writes, always stops asking."""
    pane = Pane(
        chat_cli,
        "tui",
        "--session-id",
        "perm",
        "--tool-choice",
        "write",
        "--max-tokens",
        "96",
        cwd=tmp_path,
    )
    question = "allow write? [y]es [n]o [a]lways"
    try:
        pane.wait("openclaw chat: session perm")
        pane.type("Save the word hello to hello.txt.")
        pane.wait(question)
        assert "[the model wants to run write, which needs your permission:]" in pane.screen()
        pane.type("n")
        pane.wait("(first token", 1)
        assert "[tool write failed: the user did not allow this write call" in pane.screen()
        assert list(tmp_path.iterdir()) == []  # nothing was written
        pane.type("Save the word hello to hello.txt.")
        pane.wait(question, 2)
        pane.type("y")
        pane.wait("(first token", 2)
        assert "[tool write done" in pane.screen(), pane.screen()
        assert list(tmp_path.iterdir()), "a yes ran the write"
        pane.type("Save the word bye to bye.txt.")
        pane.wait(question, 3)
        pane.type("a")
        pane.wait("(first token", 3)
        pane.type("Save the word again to again.txt.")
        pane.wait("(first token", 4)
        assert pane.screen().count(question) == 3  # "always" held for the next turn
        pane.keys("C-d")
        assert pane.ended(), pane.screen()
    finally:
        pane.close()
