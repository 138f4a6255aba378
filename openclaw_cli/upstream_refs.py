"""``--model provider/model-id``: a model of an upstream configured in openclaw.json."""

from __future__ import annotations

from pathlib import Path


def upstream_ref(model: str) -> str | None:
    """``model`` if it names a configured upstream model, None if it is a GGUF (a path
    or a name). ConfigError for a configured provider that lacks the model, or a
    file that cannot be read, naming the file."""
    if "/" not in model or model.endswith(".gguf") or Path(model).expanduser().exists():
        return None  # a GGUF path (missing or not): "model file not found" says it best
    from openclaw_daemon.upstream import config_file  # only for a provider/model ref

    cfg = config_file.load()
    return model if cfg.find(model) is not None else None
