"""The suites other branches provide, called when this tree has them.

Each is imported lazily; when a module is missing, the figure is reported as
"not available in this tree" and never filled in with a made-up number.
"""

from __future__ import annotations

import importlib
import inspect
import time
from typing import Any

from tests.faults.harness import Harness

NOT_AVAILABLE = "not available in this tree"


def _load(name: str) -> Any | None:
    try:
        return importlib.import_module(f"tests.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"tests.{name}", "tests"):
            return None
        raise


def _call_tolerant(func: Any, known: dict[str, Any]) -> Any:
    """Call ``func`` with those of ``known`` its signature names (its final
    form may differ from the one agreed: pass only what it asks for)."""
    params = inspect.signature(func).parameters
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, param in params.items():
        if name not in known:
            if param.default is inspect.Parameter.empty and param.kind not in (
                param.VAR_POSITIONAL,
                param.VAR_KEYWORD,
            ):
                raise TypeError(f"{func.__module__}.{func.__name__} needs {name!r}")
            continue
        if param.kind == param.POSITIONAL_ONLY:
            args.append(known[name])
        else:
            kwargs[name] = known[name]
    return func(*args, **kwargs)


def _timed(label: str, run: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = run()
    except Exception as exc:  # a crashing suite is a finding, reported as such
        result = {"error": f"{type(exc).__name__}: {exc}"[:400]}
    if not isinstance(result, dict):
        result = {"result": repr(result)[:400]}
    result["durationS"] = round(time.monotonic() - started, 1)
    result.setdefault("module", label)
    return result


def wire_fuzz(count: int, seed: int) -> dict[str, Any]:
    module = _load("wire_fuzz")
    if module is None:
        return {"unavailable": NOT_AVAILABLE, "module": "tests/wire_fuzz.py"}
    harness = Harness.fresh("oc-fz-")
    try:
        harness.start()

        def run() -> Any:
            result = _call_tolerant(
                module.run,
                {
                    "socket_path": harness.socket_path,
                    "state_dir": harness.state_dir,
                    "count": count,
                    "seed": seed,
                    "log_path": harness.log_path,
                },
            )
            if isinstance(result, dict):  # the goal's last clause, checked here too
                result["aliveAfter"] = harness.alive()
                ok, _, _ = harness.turn("After the fuzz: reply with one word.", "fuzz-after")
                result["normalTurnAfter"] = ok
            return result

        return _timed("tests/wire_fuzz.py", run)
    finally:
        harness.cleanup()


def other_uid() -> dict[str, Any]:
    module = _load("other_uid_check")
    if module is None:
        return {"unavailable": NOT_AVAILABLE, "module": "tests/other_uid_check.py"}
    harness = Harness.fresh("oc-uid-")
    try:
        harness.start()
        return _timed("tests/other_uid_check.py", lambda: module.check(harness.socket_path))
    finally:
        harness.cleanup()


def l3_corruption(seed: int) -> dict[str, Any]:
    module = _load("l3_corruption")
    if module is None:
        return {"unavailable": NOT_AVAILABLE, "module": "tests/l3_corruption.py"}
    harness = Harness.fresh("oc-l3-")
    known: dict[str, Any] = {
        "state_dir": harness.state_dir,
        "seed": seed,
        "socket_path": harness.socket_path,
        "log_path": harness.log_path,
    }
    try:
        return _timed("tests/l3_corruption.py", lambda: _call_tolerant(module.run, known))
    finally:
        harness.cleanup()


def tool_guards() -> dict[str, Any]:
    module = _load("tool_guard_cases")
    if module is None:
        return {"unavailable": NOT_AVAILABLE, "module": "tests/tool_guard_cases.py"}
    return _timed("tests/tool_guard_cases.py", module.run_all)
