"""The Python API's typed events (``Client.stream`` yields them), from the daemon's frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Token:
    """A piece of the reply's text, as it is decoded."""

    text: str


@dataclass(frozen=True)
class ToolStart:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolEnd:
    id: str
    name: str
    is_error: bool
    duration_ms: float
    preview: str


@dataclass(frozen=True)
class Progress:
    """Prompt prefill progress (sent for long prompts)."""

    done: int
    total: int
    rate: float


@dataclass(frozen=True)
class Phase:
    """A finished phase of the turn's trace (``model.prefill``, ``model.decode``...)."""

    name: str
    duration_ms: float
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class PermissionRequest:
    """A tool call that changes things asks first (``stream(ask=...)``): answer
    "yes", "no" or "always" (this permission for the rest of the turn)."""

    id: str
    name: str
    permission: str  # write | edit | exec
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Done:
    """The turn's result: ``envelope`` is ``openclaw agent --json``'s document."""

    envelope: dict[str, Any]

    @property
    def text(self) -> str:
        payloads = self.envelope["payloads"]
        return str(payloads[0]["text"]) if payloads else ""


Event = Token | ToolStart | ToolEnd | Progress | Phase | Notice | Done


def event_of(frame: dict[str, Any]) -> Event | None:
    kind = frame["type"]
    if kind == "token":
        return Token(frame["text"])
    if kind == "progress":
        return Progress(int(frame["done"]), int(frame["total"]), float(frame["rate"]))
    if kind == "notice":
        return Notice(frame["text"])
    if kind == "phase":
        known = ("type", "name", "durationMs")
        extra = {k: v for k, v in frame.items() if k not in known}
        return Phase(frame["name"], float(frame["durationMs"]), extra)
    if kind == "tool" and frame["phase"] == "start":
        return ToolStart(frame["id"], frame["name"], dict(frame.get("arguments") or {}))
    if kind == "tool":
        return ToolEnd(
            frame["id"],
            frame["name"],
            bool(frame.get("isError")),
            float(frame.get("durationMs") or 0.0),
            str(frame.get("preview") or ""),
        )
    return None
