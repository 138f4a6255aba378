"""The tape registry: each session's token tape, in memory and saved to disk.

A tape is the exact ids the KV cache holds for a session and its next prompt
extends. ``tape_for`` finds the one a turn continues (in memory, saved, or
rebuilt from the transcript); a turn or a compaction ``adopt_tape``s the new
one; ``park`` (idle time) parks the live KV state and saves the tapes that
changed. ``check_tape`` answers ``openclaw sessions check-tape``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openclaw_daemon.model.tape import TapeBuilder, TokenTape
from openclaw_daemon.turn import tape_check
from openclaw_daemon.turn.tape_store import TapeStore
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.wire.errors import BadRequestError
from openclaw_sessions.prompt import SYSTEM_PROMPT
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id

if TYPE_CHECKING:
    from openclaw_daemon.model.base import KVEngine


class SessionTapes:
    def __init__(
        self,
        engine: KVEngine,
        builder: TapeBuilder,
        transcript: Transcript,
        saved: TapeStore,
        *,
        checkpoint: Callable[[], object],
    ) -> None:
        self.engine = engine
        self.builder = builder
        self.transcript = transcript
        self.saved = saved
        self.checkpoint = checkpoint  # parks the live KV state (the prefix cache's)
        self.tapes: dict[str, TokenTape] = {}  # by session key
        # Tapes changed since the last park, with what ``TapeStore.save`` needs.
        self._unsaved: dict[str, tuple[SessionRef, TokenTape, str]] = {}

    def __len__(self) -> int:
        return len(self.tapes)

    def get(self, ref: SessionRef) -> TokenTape | None:
        return self.tapes.get(ref.key)

    def tape_for(
        self, ref: SessionRef, entries: list[dict[str, Any]], system: str
    ) -> tuple[TokenTape, str]:
        """The session's tape, and where it came from (for the trace)."""
        last = last_entry_id(entries)
        if last is None:
            return TokenTape(), "new"
        tape = self.tapes.get(ref.key)
        if (
            tape is not None
            and tape.last_entry_id == last
            and tape.messages[0]["content"] == system
        ):
            return tape, "memory"
        messages = self.transcript.messages(entries, system)
        saved = self.saved.load(ref, last, system)
        if saved is not None:
            text = self.engine.template.render(messages, add_generation_prompt=False)
            return TokenTape(saved, text, messages, last), "saved"
        # Edited elsewhere, a new system prompt, or never saved: rebuild from
        # the transcript (re-tokenized replies may not match the cached ids).
        tape = self.builder.from_messages(messages)
        tape.last_entry_id = last
        return tape, "rebuilt"

    def rebuild(self, entries: list[dict[str, Any]], system: str) -> TokenTape:
        """The tape of ``entries`` rendered afresh (a compaction's new layout)."""
        return self.builder.from_messages(self.transcript.messages(entries, system))

    def session_head(self, ref: SessionRef) -> str:
        """The head a session's prompt starts with (its own system prompt, if it set one)."""
        tape = self.tapes.get(ref.key)
        if tape is not None and tape.messages:
            return str(tape.messages[0]["content"])
        return self.transcript.head(SYSTEM_PROMPT)

    def adopt_tape(self, ref: SessionRef, tape: TokenTape) -> None:
        self.tapes[ref.key] = tape
        self._unsaved[ref.key] = (ref, tape, str(tape.messages[0]["content"]))

    def forget(self, ref: SessionRef) -> None:
        """Drop the session's tape from memory: the next turn rebuilds it."""
        self.tapes.pop(ref.key, None)

    def park(self) -> None:
        """Idle-time work after a turn: park the live KV state and save changed tapes."""
        self.checkpoint()
        while self._unsaved:
            _key, (ref, tape, system) = self._unsaved.popitem()
            if tape.last_entry_id is not None:
                self.saved.save(ref, tape.tokens, tape.last_entry_id, system)

    def check_tape(self, ref: SessionRef, store: SessionStore) -> dict[str, Any]:
        """Whether the tape the next turn would extend spells the transcript's render."""
        entries = store.load_entries(ref)
        if last_entry_id(entries) is None:
            raise BadRequestError(f"session {ref.session_id} has no entries")
        system = self.session_head(ref)
        tape, source = self.tape_for(ref, entries, system)
        rendered = self.engine.template.render(
            self.transcript.messages(entries, system), add_generation_prompt=False
        )
        bos = self.engine.info.bos_id if self.engine.add_bos else None
        report = tape_check.compare(
            lambda ids: self.engine.detokenize(ids, special=True), tape.tokens, rendered, bos_id=bos
        )
        return {"sessionId": ref.session_id, "sessionKey": ref.key, "tape": source, **report}
