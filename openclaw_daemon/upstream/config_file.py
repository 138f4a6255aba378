"""``openclaw.json``: OpenClaw's own configuration file, read so that a user's
existing config selects upstream engines here too.

The parts we read (OpenClaw's schema, unknown keys ignored so a full OpenClaw
config loads unchanged)::

    {
      models: { providers: { vllm: {
        baseUrl: "http://gpu-box:8000/v1", apiKey: "${VLLM_API_KEY}",
        api: "openai-completions", headers: {}, timeoutSeconds: 120,
        models: [{ id: "Qwen/Qwen3-8B", contextWindow: 32768, maxTokens: 4096 }],
      } } },
      agents: { defaults: { model: { primary: "vllm/Qwen/Qwen3-8B", fallbacks: [] } } },
      // ours: tools via the server's OpenAI tool calling for these models
      edge: { nativeTools: ["vllm/Qwen/Qwen3-8B"] },
    }

The file is found at ``$OPENCLAW_CONFIG_PATH``, else ``$OPENCLAW_STATE_DIR/openclaw.json``.
A missing file is an empty config. Standard library only at import time (the CLI
imports this); the JSON5 parser is imported only when a file exists.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from openclaw_daemon.wire.errors import ConfigError

# The wire APIs we can drive. OpenClaw's others (anthropic-messages, ...) are named
# in the model's problem instead of failing the whole file.
SUPPORTED_APIS = ("openai-completions",)
DEFAULT_TIMEOUT_SECONDS = 120.0
_ENV_REFERENCE = re.compile(r"(\$)?\$\{([A-Z_][A-Z0-9_]*)\}")


class UpstreamModel(NamedTuple):
    provider: str
    id: str
    context_window: int | None
    max_tokens: int | None
    reasoning: bool = False  # OpenClaw's flag: the model takes a thinking level

    @property
    def ref(self) -> str:
        """The ``provider/model-id`` a user passes to ``--model``."""
        return f"{self.provider}/{self.id}"


class Provider(NamedTuple):
    id: str
    base_url: str  # as written (``${VAR}`` unexpanded), for display; see url()
    api: str
    api_key_raw: Any  # a string with ${VAR}s, or a SecretRef; see api_key()
    headers_raw: dict[str, Any]
    timeout_seconds: float
    models: tuple[UpstreamModel, ...]
    invalid: str | None = None  # why the entry cannot be used at all, found at load

    def _where(self, key: str) -> str:
        return f"models.providers.{self.id}.{key}"

    def url(self) -> str:
        """The base URL with ``${VAR}`` expanded now, checked to be http(s)."""
        url = expand_env(self.base_url, where=self._where("baseUrl")).rstrip("/")
        if not url.lower().startswith(("http://", "https://")):
            raise ConfigError(
                f"{self._where('baseUrl')} must be an http(s) URL, got {url!r}",
                hint='For llama-server: "baseUrl": "http://127.0.0.1:8080/v1".',
            )
        return url

    def api_key(self) -> str:
        """The key with ``${VAR}`` expanded now, so a variable set after the file was
        written (or only in the daemon's environment) is the one used."""
        if self.api_key_raw in (None, ""):
            return ""
        return _secret(self.api_key_raw, where=self._where("apiKey"))

    def headers(self) -> dict[str, str]:
        return {
            name: _secret(value, where=self._where(f"headers.{name}"))
            for name, value in self.headers_raw.items()
        }

    def problem(self) -> str | None:
        """Why this provider cannot be used as configured, or None."""
        if self.invalid:
            return self.invalid
        if self.api not in SUPPORTED_APIS:
            return f'api {self.api!r} is not supported here; use "openai-completions"'
        try:
            self.url()
            self.api_key()
            self.headers()
        except ConfigError as exc:
            return exc.message
        return None


class OpenClawConfig(NamedTuple):
    path: Path
    exists: bool
    providers: dict[str, Provider]
    primary: str | None  # agents.defaults.model.primary: "provider/model-id" or a GGUF
    fallbacks: tuple[str, ...]
    routing_raw: Any = None  # edge.routing, our own key, as written (``routing`` reads it)
    # edge.rawCompletion: our own prompt ids to llama-server's /completion (the default)
    raw_completion: bool = True
    # edge.nativeTools: the "provider/model-id"s whose tools go as OpenAI ``tools``
    native_tools: frozenset[str] = frozenset()

    def find(self, ref: str) -> tuple[Provider, UpstreamModel] | None:
        """The configured provider and model a ``provider/model-id`` names, or None when
        ``ref`` names no configured provider (it is then a GGUF path or model name)."""
        provider_id, sep, model_id = ref.partition("/")
        provider = self.providers.get(provider_id)
        if not sep or provider is None:
            return None
        for model in provider.models:
            if model.id == model_id:
                return provider, model
        known = ", ".join(m.ref for m in provider.models) or "none"
        raise ConfigError(
            f"provider {provider_id!r} in {self.path} has no model {model_id!r}",
            hint=f"Configured models: {known}. Add it to models.providers.{provider_id}.models.",
        )


def config_path() -> Path:
    from openclaw_daemon import config  # stdlib only

    return config.openclaw_config_path()


def expand_env(value: str, *, where: str) -> str:
    """OpenClaw's substitution: each ``${VAR}`` (upper-case names) becomes the
    variable's value, ``$${VAR}`` is a literal ``${VAR}``, and an unset or empty
    variable is an error that names it rather than an empty key sent."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):  # the $${VAR} escape
            return match.group(0)[1:]
        name = match.group(2)
        if not os.environ.get(name):
            raise ConfigError(
                f"{where} references ${{{name}}}, which is not set",
                hint=f"export {name}=... in the shell that starts the daemon.",
            )
        return os.environ[name]

    return _ENV_REFERENCE.sub(substitute, value)


def _secret(value: Any, *, where: str) -> str:
    """A string (``${VAR}`` expanded) or OpenClaw's SecretRef ``{source: "env", id}``."""
    if isinstance(value, str):
        return expand_env(value, where=where)
    if isinstance(value, dict) and value.get("source") == "env" and value.get("id"):
        return expand_env("${" + str(value["id"]) + "}", where=where)
    if isinstance(value, dict):
        raise ConfigError(
            f"{where}: a secret from {value.get('source')!r} is not supported here",
            hint='Use "${VAR}" or {source: "env", id: "VAR"}.',
        )
    raise ConfigError(f"{where} must be a string or a secret reference")


def load(path: Path | None = None) -> OpenClawConfig:
    """Read and check the config file; a missing file is an empty config."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return OpenClawConfig(path, False, {}, None, ())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        raw = json.loads(text)  # most files are plain JSON: 100x faster than json5
    except ValueError:
        raw = _json5(text, path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold an object at the top level")
    return _parse(path, raw)


def _json5(text: str, path: Path) -> Any:
    import json5  # off the CLI's start-up path: only when a config exists

    try:
        return json5.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON5: {exc}", hint="Fix the file, or move it aside."
        ) from None


def _parse(path: Path, raw: dict[str, Any]) -> OpenClawConfig:
    providers_raw = _object(_object(raw, "models", path), "providers", path)
    providers = {pid: _provider(pid, spec, path) for pid, spec in providers_raw.items()}
    model = _object(_object(raw, "agents", path), "defaults", path).get("model")
    primary: str | None
    fallbacks: list[Any]
    if isinstance(model, str) or model is None:
        primary, fallbacks = model, []  # OpenClaw accepts the short form
    elif isinstance(model, dict):
        primary, fallbacks = model.get("primary"), model.get("fallbacks") or []
    else:
        raise ConfigError(f"{path}: agents.defaults.model must be a string or an object")
    if primary is not None and not isinstance(primary, str):
        raise ConfigError(f"{path}: agents.defaults.model.primary must be a string")
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ConfigError(f"{path}: agents.defaults.model.fallbacks must be a list of strings")
    edge = _object(raw, "edge", path)
    raw_completion = edge.get("rawCompletion", True)
    if not isinstance(raw_completion, bool):
        raise ConfigError(f"{path}: edge.rawCompletion must be true or false")
    native_tools = _native_tools(edge.get("nativeTools"), providers, path)
    return OpenClawConfig(path, True, providers, primary or None, tuple(fallbacks),
                          edge.get("routing"), raw_completion, native_tools)  # fmt: skip


def _native_tools(value: Any, providers: dict[str, Provider], path: Path) -> frozenset[str]:
    """edge.nativeTools: configured models (``provider/model-id``) whose server does
    OpenAI tool calling; a name that is no configured model is an error, not a model
    silently left on our own tool format."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(ref, str) for ref in value):
        raise ConfigError(
            f'{path}: edge.nativeTools must be a list of "provider/model-id" strings',
            hint='For example "edge": {"nativeTools": ["vllm/Qwen/Qwen3-8B"]}.',
        )
    for index, ref in enumerate(value):
        provider_id, _, model_id = ref.partition("/")
        provider = providers.get(provider_id)
        if provider is None or not any(m.id == model_id for m in provider.models):
            known = ", ".join(m.ref for p in providers.values() for m in p.models) or "none"
            raise ConfigError(
                f"{path}: edge.nativeTools[{index}] is {ref!r}, which is no model of a "
                "provider in models.providers",
                hint=f"Name a configured model as provider/model-id; configured: {known}.",
            )
    return frozenset(value)


def _object(parent: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be an object, got {type(value).__name__}")
    return value


def _provider(pid: str, spec: Any, path: Path) -> Provider:
    """One provider; a broken one carries its problem instead of failing the file, so
    the other providers (and the embedded model) still list and run."""
    where = f"{path}: models.providers.{pid}"
    if not isinstance(spec, dict):
        return Provider(
            pid, "", "", None, {}, DEFAULT_TIMEOUT_SECONDS, (), f"{where} must be an object"
        )
    base_url = spec.get("baseUrl")
    api = str(spec.get("api") or "openai-completions")
    try:
        if not isinstance(base_url, str) or not base_url:
            raise ConfigError(
                f"{where} has no baseUrl (a built-in OpenClaw provider is not driven here)"
            )
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict):
            raise ConfigError(f"{where}.headers must be an object")
        timeout = spec.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
        if not _finite_positive(timeout):
            raise ConfigError(f"{where}.timeoutSeconds must be a positive number")
        models_raw = spec.get("models") or []
        if not isinstance(models_raw, list):
            raise ConfigError(f"{where}.models must be a list")
        defaults = (spec.get("contextWindow"), spec.get("maxTokens"))
        models = tuple(
            _model(pid, m, f"{where}.models[{i}]", defaults) for i, m in enumerate(models_raw)
        )
    except ConfigError as exc:
        return Provider(
            pid, str(base_url or ""), api, None, {}, DEFAULT_TIMEOUT_SECONDS, (), exc.message
        )
    return Provider(
        id=pid,
        base_url=base_url.rstrip("/"),
        api=api,
        api_key_raw=spec.get("apiKey"),
        headers_raw={str(k): v for k, v in headers.items()},
        timeout_seconds=float(timeout),
        models=models,
    )


def _finite_positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    )


def _model(pid: str, spec: Any, where: str, defaults: tuple[Any, Any]) -> UpstreamModel:
    # A bare string is our shorthand for {id: "..."} (OpenClaw itself wants the object).
    if isinstance(spec, str):
        spec = {"id": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("id"), str) or not spec["id"]:
        raise ConfigError(f'{where} needs an "id" (the model name the server knows)')
    window = spec.get("contextWindow", defaults[0])  # the provider's value is the default
    return UpstreamModel(
        provider=pid,
        id=spec["id"],
        context_window=_positive_int(window, f"{where}.contextWindow"),
        max_tokens=_positive_int(spec.get("maxTokens", defaults[1]), f"{where}.maxTokens"),
        reasoning=spec.get("reasoning") is True,
    )


def _positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not _finite_positive(value) or int(value) != value:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return int(value)
