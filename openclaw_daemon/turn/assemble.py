"""Wire the turn's parts together: the one place that knows which part needs which.

The server (the composition root) calls ``turn_services`` once, with the
engine and the prefix cache, and hands each handler the part it uses: the
pipeline runs turns, the compactor compacts, the tape registry parks and
checks tapes. No part reaches through another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.config import Paths
from openclaw_daemon.front.chat_turn import ChatTurns
from openclaw_daemon.front.front_tapes import FrontTapes
from openclaw_daemon.model import markup
from openclaw_daemon.model.tape import TapeBuilder
from openclaw_daemon.turn.agent_loop import AgentLoop
from openclaw_daemon.turn.compactor import Compactor
from openclaw_daemon.turn.model_calls import ModelCalls
from openclaw_daemon.turn.pipeline import TurnPipeline
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.turn.tape_store import TapeStore
from openclaw_daemon.turn.transcript import Transcript

if TYPE_CHECKING:
    from openclaw_daemon.model.base import KVEngine


@dataclass(frozen=True)
class TurnServices:
    pipeline: TurnPipeline
    compactor: Compactor
    tapes: SessionTapes
    chats: ChatTurns  # the OpenAI front's completions (openclaw serve)


def turn_services(
    engine: KVEngine, paths: Paths, *, prefill_batch: int, cache: PrefixCache
) -> TurnServices:
    transcript = Transcript(engine)
    calls = ModelCalls(
        engine,
        prefill_batch=prefill_batch,
        observe_prefill=cache.observe_prefill,
        tags=transcript.format.tags,
    )
    builder = TapeBuilder(
        engine.template,
        engine,
        add_bos=engine.add_bos,
        # The tools section's control tags go in as the tokens the model knows
        # (only those that are one here: splitting the section at a tag the
        # vocabulary lacks would change its tokens for nothing), and generated
        # ones are matched as the decoder spelled them.
        trusted=markup.Trusted(transcript.tools_section, tuple(calls.control)),
        spelled=calls.spelled,
    )
    saved = TapeStore(
        paths.state_dir / "cache" / "tapes", cache.store.dir.name, n_vocab=engine.info.n_vocab
    )
    tapes = SessionTapes(engine, builder, transcript, saved, checkpoint=cache.checkpoint_all)
    compactor = Compactor(engine, cache, tapes, builder, calls)
    pipeline = TurnPipeline(
        engine,
        paths,
        cache=cache,
        builder=builder,
        transcript=transcript,
        tapes=tapes,
        loop=AgentLoop(engine, calls, builder, transcript, cache),
        compactor=compactor,
    )
    front_tapes = FrontTapes(
        paths.state_dir / "cache" / "front-tapes",
        cache.store.dir.name,
        n_vocab=engine.info.n_vocab,
    )
    chats = ChatTurns(engine, cache, calls, transcript.format, front_tapes)
    return TurnServices(pipeline, compactor, tapes, chats)
