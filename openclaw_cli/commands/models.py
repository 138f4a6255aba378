"""``openclaw models list|show|add|remove``: the models a daemon can run, read
from their GGUF headers (``model.catalog``) and the registry (``model_names``).
No daemon is needed and none is started.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from openclaw_cli.views import render
from openclaw_daemon import config, model_names, state_dirs
from openclaw_daemon.model import catalog
from openclaw_daemon.wire.errors import ModelError, OpenClawError

MIB = 2**20


def _embedded() -> dict[str, Any] | None:
    try:
        path = config.embedded_model_path()
    except ModelError:
        return None  # not installed: nothing to list
    return {"name": model_names.EMBEDDED_MODEL_NAME, "path": str(path), "source": "embedded"}


def upstream_models() -> tuple[list[dict[str, Any]], str | None]:
    """Every model of every provider in ``openclaw.json``, each with whether its server
    answers and serves it (one ``GET /models`` per provider, all at once); and the
    configured primary when it is one of them (turns then run there by default)."""
    from openclaw_daemon.upstream import config_file

    cfg = config_file.load()
    primary = cfg.primary if cfg.primary and cfg.find(cfg.primary) else None
    problems = {p.id: p.problem() for p in cfg.providers.values()}  # expands ${VAR}s once
    providers = [p for p in cfg.providers.values() if p.models or problems[p.id]]
    reach: dict[str, dict[str, Any]] = {}
    if providers:
        from openclaw_daemon.upstream.probe import probe_all

        reach = probe_all([p for p in providers if problems[p.id] is None])
    listed = []
    for provider in providers:
        # A provider that cannot be used still gets a row, so its problem is seen.
        for model in provider.models or (config_file.UpstreamModel(provider.id, "*", None, None),):
            found = reach.get(provider.id)
            problem = problems[provider.id] or (found or {}).get("problem")
            if found and found["reachable"] and model.id not in found["served"]:
                problem = (
                    f"the server does not list {model.id!r} (it serves: "
                    + (", ".join(found["served"]) or "nothing")
                    + ")"
                )
            listed.append(
                {
                    "name": model.ref,
                    "id": model.id,
                    "path": provider.base_url,
                    "source": "upstream",
                    "sizeBytes": None,
                    "contextWindow": model.context_window,
                    "maxTokens": model.max_tokens,
                    # None: not probed (the provider has a config problem)
                    "reachable": found["reachable"] if found else None,
                    "problem": problem,
                }
            )
    return listed, primary


def _entry(base: dict[str, Any]) -> dict[str, Any]:
    """A listed model with its id and size read from the file, or why it cannot be."""
    path = Path(base["path"])
    try:
        facts = catalog.model_facts(path)
        return {**base, "id": facts["id"], "sizeBytes": facts["sizeBytes"], "problem": None}
    except OpenClawError as exc:
        return {**base, "id": base.get("id", ""), "sizeBytes": None, "problem": exc.message}


def _default_path() -> tuple[str | None, str | None]:
    """The default model's path, or why there is none (a bad OPENCLAW_MODEL)."""
    try:
        return str(config.resolve_model_path()), None
    except OpenClawError as exc:
        return None, f"{config.ENV_MODEL}: {exc.message}"


def entries() -> tuple[list[dict[str, Any]], str | None]:
    paths = config.resolve_paths()
    listed = [_embedded()] + [
        {"name": e.name, "path": e.path, "id": e.id, "source": "registered"}
        for e in model_names.load(paths.models_file)
    ]
    upstream, primary = upstream_models()
    found = [_entry(b) for b in listed if b is not None] + upstream
    default, problem = _default_path()
    if default and not any(e.get("path") == default for e in found):
        # OPENCLAW_MODEL names a file nobody registered: still show what runs.
        found.append(_entry({"name": "", "path": default, "source": "OPENCLAW_MODEL"}))
    for entry in found:
        if primary:  # an upstream primary answers the turns that name no model
            entry["default"] = entry["source"] == "upstream" and entry["name"] == primary
        else:
            entry["default"] = entry.get("path") == default
    return found, problem


def list_models(*, json_out: bool) -> None:
    models, problem = entries()
    if json_out:
        render.print_json({"models": models, "defaultProblem": problem})
        return
    for entry in models:
        mark = "*" if entry["default"] else " "
        size = f"{entry['sizeBytes'] / MIB:.0f} MiB" if entry["sizeBytes"] else "-"
        source = entry["source"]
        if source == "upstream":
            state = {True: "up", False: "down", None: "not probed"}[entry["reachable"]]
            size, source = "-", f"upstream ({state})"
        sys.stdout.write(
            f"{mark} {entry['name'] or '-':<28} {entry['id']:<30} {size:>9}  "
            f"{source:<16} {entry['path']}\n"
        )
        if entry["problem"]:
            sys.stdout.write(f"    problem: {entry['problem']}\n")
    sys.stdout.write(
        "(* the default when a turn names no --model: an upstream primary in openclaw.json, "
        "else OPENCLAW_MODEL, else the embedded model; edge.routing rules come first)\n"
    )
    if problem:
        render.notice(f"no default model: {problem}")


def show(
    model: str,
    *,
    n_ctx: int | None,
    n_gpu_layers: int,
    json_out: bool,
    chat_template: str | None = None,
) -> None:
    path = config.resolve_model_path(model)
    facts = catalog.model_facts(
        path,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        chat_template=chat_template or config.chat_template_setting(),
        tool_format=tool_format_of,
    )
    if json_out:
        render.print_json(facts)
        return
    for name, value in _rows(facts):
        sys.stdout.write(f"{name:<18} {value}\n")


def tool_format_of(template_source: str) -> str:
    """The tool-call format the daemon would choose for this template. Imported
    here, not at start-up: the formats and the template bring jinja2."""
    from openclaw_daemon.model.chat_template import ChatTemplate
    from openclaw_daemon.tools.formats import format_for

    try:
        return format_for(ChatTemplate(template_source, bos_token="", eos_token="")).name
    except ModelError as exc:
        return f"unknown ({exc.message})"


def _rows(facts: dict[str, Any]) -> list[tuple[str, Any]]:
    swa = facts["slidingWindow"]
    memory = facts["memoryPredicted"]
    n_ctx = facts["nCtx"]
    window = (
        f"{swa['window']} tokens on {swa['slidingLayers']} of {facts['layers']} layers "
        f"({swa['layerPattern']}, {swa['patternSource']})"
        if swa
        else "none"
    )
    kv = f"{facts['kvBytesPerToken']:,} bytes per token (every layer holds n_ctx)"
    if swa:
        kv += (
            f"; {facts['kvBytesPerTokenGlobalLayers']:,} with a window-sized SWA cache "
            f"({facts['kvBytesAtContext'] / MIB:.0f} vs "
            f"{facts['kvBytesAtContextWindowCache'] / MIB:.0f} MiB at n_ctx {n_ctx})"
        )
    return [
        ("id", facts["id"]),
        ("name", facts["displayName"]),
        ("path", facts["path"]),
        ("size", f"{facts['sizeBytes'] / MIB:.0f} MiB ({facts['quantization'] or '?'})"),
        ("architecture", f"{facts['architecture']}, {facts['layers']} layers"),
        ("context trained", facts["contextTrained"]),
        ("sliding window", window),
        ("chat template", f"{facts['templateFamily']} ({facts['templateSource']})"),
        ("tool format", facts.get("toolFormat", "?")),
        ("kv cache", kv),
        (
            f"memory @ {n_ctx}",
            f"{memory['peak'] / MIB:.0f} MiB predicted peak (weights "
            f"{memory['weights'] / MIB:.0f}, KV {memory['kvCache'] / MIB:.0f}, compute "
            f"{memory['compute'] / MIB:.0f}, RAM cache {memory['ramCache'] / MIB:.0f})"
            + (f", {memory['device'] / MIB:.0f} of it on the GPU" if memory["device"] else ""),
        ),
    ]


def add(path: Path, *, name: str | None, json_out: bool) -> None:
    paths = config.resolve_paths()
    target = path.expanduser().resolve()
    facts = catalog.model_facts(target)  # a missing or non-GGUF file fails here
    entry = model_names.Entry(model_names.check_name(name or facts["id"]), str(target), facts["id"])
    state_dirs.ensure_private_dir(paths.state_dir)
    model_names.add(paths.models_file, entry)
    if json_out:
        render.print_json({"added": entry._asdict()})
    else:
        render.notice(f"added {entry.name} ({entry.id}): {entry.path}")


def remove(name: str, *, json_out: bool) -> None:
    removed = model_names.remove(config.resolve_paths().models_file, name)
    if json_out:
        render.print_json({"removed": removed._asdict()})
    else:
        render.notice(f"removed {removed.name} ({removed.path}; the file is left alone)")
