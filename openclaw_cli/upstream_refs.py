"""``--model provider/model-id``: a model of an upstream configured in openclaw.json."""

from __future__ import annotations

from pathlib import Path

from openclaw_daemon.wire.errors import BadRequestError


def refuse_upstream_ref(model: str) -> None:
    """``provider/model-id`` of a configured upstream is listed by ``models list`` but
    cannot answer turns yet (issue 16); say so instead of "model file not found"."""
    if "/" not in model or model.endswith(".gguf") or Path(model).expanduser().exists():
        return  # a GGUF path (missing or not): "model file not found" says it best
    from openclaw_daemon.upstream import config_file  # only for a provider/model ref

    cfg = config_file.load()
    found = cfg.find(model)
    if found is not None:
        raise BadRequestError(
            f"{model} is an upstream model ({found[0].base_url}); turns through upstream "
            "engines are not implemented yet",
            hint="Run the turn on the embedded model (omit --model) or pass a GGUF path.",
        )
