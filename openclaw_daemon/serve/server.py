"""The daemon process: load the model once, serve the socket until stopped.

``openclawd`` (or ``python -m openclaw_daemon.serve.server``) runs in the foreground;
the CLI starts it detached, with output going to the daemon log. It writes a
status file with its pid and socket once it is ready to serve, and removes it,
with the socket, when it stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from openclaw_daemon import config, state_dirs
from openclaw_daemon.model.admission import n_ctx_warning, predict_memory
from openclaw_daemon.model.base import EngineFactory, EngineSpec, LoadedEngine
from openclaw_daemon.observability.metrics import Metrics
from openclaw_daemon.observability.tracing import TurnLog
from openclaw_daemon.serve import daemon_args, idle, preload
from openclaw_daemon.serve.handlers import DaemonState, Handlers
from openclaw_daemon.serve.scheduler import Scheduler
from openclaw_daemon.serve.transport import UnixServer
from openclaw_daemon.tools.spec import TOOLS_BY_NAME
from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import OpenClawError

if TYPE_CHECKING:
    from openclaw_daemon.cache.kv_store import KVStore
    from openclaw_daemon.tools.grammar import SchemaToGbnf
    from openclaw_daemon.turn.session_tapes import SessionTapes
    from openclaw_daemon.upstream.turns import UpstreamTurns

log = logging.getLogger("openclawd")


def memory_now() -> dict[str, int]:
    """Resident and peak resident bytes of this process."""
    import psutil

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024
    rss = psutil.Process().memory_info().rss
    # The two are counted a little differently; the peak is never below now.
    return {"rss": rss, "peak": max(peak_bytes, rss)}


def load_llama_engine(spec: EngineSpec) -> LoadedEngine:
    """The default engine factory: check the GGUF fits in memory, then load it
    with llama.cpp."""
    from openclaw_daemon.model.llama_engine import Engine  # the one llama_cpp import

    warning = n_ctx_warning(spec.model_path, spec.n_ctx)
    if warning:
        log.warning("%s", warning)
    # Before the load the build's offload support is unknown: check with the
    # layers asked for (unset: all on the host), then split again by what the
    # engine actually offloaded (a CPU build offloads none, whatever was asked).
    requested = max(spec.n_gpu_layers or 0, 0)
    prediction = predict_memory(
        spec.model_path, spec.n_ctx, spec.ram_cache_budget, n_gpu_layers=requested
    )
    engine = Engine(
        spec.model_path,
        n_ctx=spec.n_ctx,
        n_threads=config.threads_setting(),
        chat_template=spec.chat_template,
        n_gpu_layers=spec.n_gpu_layers,
        flash_attn=config.flash_attn_setting(),
        parallel=spec.parallel,
    )
    if engine.flash_attn:
        log.info(
            "flash attention on (%s): warm turns are not computed as cold", config.ENV_FLASH_ATTN
        )
    if engine.info.n_gpu_layers != requested:
        prediction = predict_memory(
            spec.model_path,
            spec.n_ctx,
            spec.ram_cache_budget,
            n_gpu_layers=engine.info.n_gpu_layers,
            check=False,
        )
    return LoadedEngine(engine, prediction)


def _load_engine(engine_factory: EngineFactory, spec: EngineSpec) -> LoadedEngine:
    started = time.monotonic()
    loaded = engine_factory(spec)
    log.info("loaded %s in %.2fs", spec.model_path, time.monotonic() - started)
    return loaded


def _upstream_turns(
    paths: config.Paths, tapes: SessionTapes, schema_to_gbnf: SchemaToGbnf
) -> UpstreamTurns:
    """Turns on the upstream engines openclaw.json configures (read at each turn)."""
    from openclaw_daemon.upstream.targets import UpstreamTargets
    from openclaw_daemon.upstream.turns import UpstreamTurns

    return UpstreamTurns(paths, tapes, UpstreamTargets(), schema_to_gbnf)


class Daemon:
    """The composition root: builds the engine (through ``engine_factory``, so a
    test can run the whole daemon in-process on a fake), the cache, the
    pipeline, the scheduler and the socket server."""

    def __init__(
        self,
        model_path: Path,
        n_ctx: int,
        *,
        cache_ram: int,
        cache_disk: int,
        chat_template: str | None = None,
        n_gpu_layers: int | None = None,
        parallel: int | None = None,
        engine_factory: EngineFactory = load_llama_engine,
        idle_timeout_s: float = 0.0,
        preload_session: str | None = None,
    ) -> None:
        from openclaw_daemon.cache.prefix_cache import PrefixCache
        from openclaw_daemon.turn.assemble import turn_services

        self.paths = config.resolve_paths()
        state_dirs.prepare(self.paths)
        loaded = _load_engine(
            engine_factory,
            EngineSpec(
                model_path,
                n_ctx,
                cache_ram,
                chat_template=chat_template,
                n_gpu_layers=n_gpu_layers,
                parallel=parallel,
            ),
        )
        self.engine = loaded.engine
        self.memory_prediction = loaded.memory_prediction
        # What --parallel asked for: a sliding-window model runs one sequence
        # whatever it asked, and a second start with the same flag is the same daemon.
        self.parallel_asked = parallel
        state_dirs.ensure_private_dir(self.paths.cache_dir)
        sequences = getattr(self.engine, "sequences", None)  # several: llama_engine's
        self.scheduler = (
            Scheduler(parallel=sequences.parallel, bind=sequences.bind)
            if sequences is not None and sequences.parallel > 1
            else Scheduler()
        )
        self.store = self._open_store(cache_ram=cache_ram, cache_disk=cache_disk)
        self.cache = PrefixCache(self.engine, self.store)
        turns = turn_services(
            self.engine, self.paths, prefill_batch=config.prefill_batch_setting(), cache=self.cache
        )
        self.pipeline, self.compactor, self.tapes = turns.pipeline, turns.compactor, turns.tapes
        self.chats = turns.chats
        self.upstream = _upstream_turns(self.paths, self.tapes, self.engine.schema_to_gbnf)
        self.started_at = time.time()
        memory_now()  # imports psutil now, not in the first turn's trace report
        self.state = self._handler_state()
        self.server = UnixServer(
            self.paths.socket,
            Handlers(self.state),
            max_connections=config.max_connections_setting(),
            hello_timeout=config.hello_timeout_setting(),
        )
        self._stopped = threading.Event()
        self.idle_timeout_s = idle_timeout_s
        self.preload_session = preload_session

    def _open_store(self, *, cache_ram: int, cache_disk: int) -> KVStore:
        """The KV cache's store for this model, with the disk tier's index read back;
        it defers its background work to the scheduler's quiet moments."""
        from openclaw_daemon.cache.kv_store import KVStore

        store = KVStore(
            self.paths.cache_dir,
            self.engine.fingerprint(),
            ram_budget=cache_ram,
            disk_budget=cache_disk,
            quiet_for=self.scheduler.quiet_for,
            worker_busy=self.scheduler.working,
        )
        store.load_disk_index()
        return store

    def _handler_state(self) -> DaemonState:
        """What the request handlers reach: the turn services and this daemon's hooks."""
        return DaemonState(
            pipeline=self.pipeline,
            compactor=self.compactor,
            tapes=self.tapes,
            paths=self.paths,
            model_name=self.engine.info.model_id,
            scheduler=self.scheduler,
            status=self.status,
            request_shutdown=self.request_shutdown,
            cache_stats=self.cache_stats,
            cache_clear=self.cache.clear,
            turn_log=TurnLog(self.paths.turns_file),
            metrics=Metrics(tool_names=frozenset(TOOLS_BY_NAME)),
            memory=memory_now,
            gauges=self.gauges,
            prefill_ahead=config.prefill_ahead_setting(),
            upstream=self.upstream,
            chats=self.chats,
        )

    def status(self) -> dict[str, Any]:
        info = self.engine.info
        memory = memory_now()
        return {
            "pid": os.getpid(),
            "protocolVersion": protocol.PROTOCOL_VERSION,
            "model": info.model_id,
            "modelName": info.name,
            "modelPath": info.path,
            "modelBytes": info.size_bytes,
            "nCtx": info.n_ctx,
            "gpuOffload": info.gpu_offload,
            "templateFamily": info.template_family,
            "templateSource": info.template_source,
            # What a cached state of this model can be cut back to (docs/internals.md).
            "kvMemory": {"kind": info.memory, "slidingWindow": info.n_swa},
            # Greedy turns draft from the tape by default where that changes nothing
            # but the speed (--prompt-lookup auto; docs/internals.md).
            "promptLookup": {
                "draftsExact": info.drafts_exact,
                "byDefault": info.drafts_by_default,
            },
            "offload": {
                "backend": info.gpu_backend,
                "layersOffloaded": info.n_gpu_layers,
                "layersTotal": info.n_layers + 1,  # llama.cpp counts the output layer
            },
            "uptimeS": round(time.time() - self.started_at, 1),
            "idleTimeoutS": self.idle_timeout_s,  # 0: never stops when idle
            "rssBytes": memory["rss"],
            "peakRssBytes": memory["peak"],
            "memoryPredicted": self.memory_prediction,
            "sessions": len(self.tapes),
            "turnsServed": self.pipeline.turns_served,
            # Completions through the OpenAI front (openclaw serve), and its reply tapes.
            "openai": {"served": self.chats.served, "tapes": len(self.chats.tapes)},
            # Turns and compactions on upstream engines (openclaw.json), counted apart.
            "upstream": {
                "turnsServed": self.upstream.turns_served,
                **self.upstream.compactor.counters,
            },
            "queued": self.scheduler.queued,
            # Turns of different sessions at once (--parallel) and their shared steps.
            "parallel": self._parallel_status(),
            "cache": self.cache_stats(),
            "compaction": {
                **self.compactor.counters,
                "reserveTokens": self.compactor.settings.reserve,
                "keepRecentTokens": self.compactor.settings.keep_recent,
            },
            "socket": str(self.paths.socket),
            "stateDir": str(self.paths.state_dir),
            "logFile": str(self.paths.log_file),
        }

    def _parallel_status(self) -> dict[str, Any]:
        step_stats = getattr(self.engine, "step_stats", None)  # the llama engine's
        asked = {"asked": self.parallel_asked}
        if step_stats is None:
            return {"parallel": 1, **asked, "running": 1 if self.scheduler.busy() else 0}
        return {**step_stats(), **asked, "running": self.scheduler.running}

    def gauges(self) -> list[tuple[str, float, dict[str, str]]]:
        """Point-in-time values for ``openclaw metrics``."""
        memory = memory_now()
        cache = self.store.stats()
        return [
            ("openclaw_daemon_up", 1.0, {}),
            ("openclaw_daemon_start_time_seconds", self.started_at, {}),
            ("openclaw_resident_memory_bytes", memory["rss"], {}),
            ("openclaw_peak_resident_memory_bytes", memory["peak"], {}),
            ("openclaw_cache_bytes", cache["ramBytes"], {"tier": self.store.ram.name}),
            ("openclaw_cache_bytes", cache["diskBytes"], {"tier": self.store.disk.name}),
            ("openclaw_cache_entries", cache["ramEntries"], {"tier": self.store.ram.name}),
            ("openclaw_cache_entries", cache["diskEntries"], {"tier": self.store.disk.name}),
            ("openclaw_compactions_total", self.compactor.counters["compactions"], {}),
            ("openclaw_live_sessions", len(self.tapes), {}),
            ("openclaw_model_info", 1.0, {"model": self.engine.info.model_id}),
        ]

    def cache_stats(self) -> dict[str, Any]:
        return {**self.cache.stats(), "idleCheckpoints": self.scheduler.idle_runs}

    def write_status_file(self) -> None:
        data = {
            "pid": os.getpid(),
            "socket": str(self.paths.socket),
            "model": self.engine.info.path,
            "startedAt": self.started_at,
        }
        tmp = self.paths.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.paths.status_file)

    def remove_status_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.paths.status_file.unlink()

    def request_shutdown(self) -> None:
        self.remove_status_file()
        self.server.shutdown()

    def idle_for(self) -> float:
        """Seconds with no connection open, no turn and no background job; else 0."""
        return 0.0 if self.scheduler.working() else self.server.idle_for()

    def serve(self) -> None:
        self.write_status_file()
        log.info("serving on %s (pid %d)", self.paths.socket, os.getpid())
        idle.watch(
            self.idle_timeout_s,
            idle_for=self.idle_for,
            stop=self.request_shutdown,
            stopped=self._stopped,
        )
        if self.preload_session:
            preload.schedule(
                self.preload_session,
                paths=self.paths,
                scheduler=self.scheduler,
                cache=self.cache,
                tapes=self.tapes,
                transcript=self.pipeline.transcript,
            )
        try:
            self.server.serve_forever()
        finally:
            self._stopped.set()
            self.remove_status_file()
            self.server.close()
            # Park the live session and finish disk writes, so a restart resumes warm.
            self.scheduler.shutdown()
            self.store.close()
            self.upstream.targets.close()
            log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = daemon_args.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        model_path = config.resolve_model_path(args.model)
        daemon = Daemon(
            model_path,
            args.n_ctx or config.n_ctx_setting(),
            cache_ram=config.cache_ram_setting(args.cache_ram),
            cache_disk=config.cache_disk_setting(args.cache_disk),
            chat_template=args.chat_template or config.chat_template_setting(),
            n_gpu_layers=config.n_gpu_layers_setting(args.n_gpu_layers),
            parallel=config.parallel_setting(args.parallel),
            idle_timeout_s=config.idle_timeout_setting(args.idle_timeout),
            preload_session=args.preload,
        )
    except OSError as exc:
        error = state_dirs.as_state_dir_error(exc)
        if error is None:
            raise
        print(f"openclawd: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 2
    except OpenClawError as exc:
        print(f"openclawd: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.request_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
