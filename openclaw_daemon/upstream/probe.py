"""Is a configured upstream reachable, and which models does it serve?

``GET {baseUrl}/models`` with a short timeout, as ``openclaw models list`` shows it.
httpx is imported here, never on the CLI's start-up path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from openclaw_daemon.upstream.config_file import Provider
from openclaw_daemon.wire.errors import ConfigError

PROBE_TIMEOUT_SECONDS = 3.0


def request_headers(provider: Provider) -> dict[str, str]:
    """The provider's headers plus its bearer key, as every request sends them."""
    headers = provider.headers()
    key = provider.api_key()
    if key and not any(name.lower() == "authorization" for name in headers):
        headers["Authorization"] = f"Bearer {key}"
    return headers


def probe(provider: Provider, timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """``{"reachable", "served", "problem"}`` for one provider; never raises."""
    import httpx

    try:
        url = f"{provider.url()}/models"
        headers = request_headers(provider)
    except ConfigError as exc:
        return {"reachable": None, "served": [], "problem": exc.message}  # not probed
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.ConnectError as exc:
        return _down(f"cannot connect to {url}: {exc}")
    except httpx.TimeoutException:
        return _down(f"no answer from {url} within {timeout:g} s")
    except httpx.HTTPError as exc:
        return _down(f"{url}: {type(exc).__name__}: {exc}")
    if response.status_code in (401, 403):
        return _down(f"{url} refused the key (HTTP {response.status_code}); check apiKey")
    if response.status_code != 200:
        return _down(f"{url} answered HTTP {response.status_code}")
    try:
        data = response.json().get("data") or []
        served = [str(m.get("id")) for m in data if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return _down(f"{url} did not answer an OpenAI-style model list")
    return {"reachable": True, "served": served, "problem": None}


def _down(problem: str) -> dict[str, Any]:
    return {"reachable": False, "served": [], "problem": problem}


def probe_all(providers: list[Provider]) -> dict[str, dict[str, Any]]:
    """Probe every provider at once, so one slow box does not add up."""
    if not providers:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(providers))) as pool:
        results = list(pool.map(probe, providers))
    return {p.id: r for p, r in zip(providers, results, strict=True)}
