"""The one error hierarchy for OpenClaw edge, shared by the CLI and the daemon.

Every error meant for a user is an ``OpenClawError`` with a stable ``code``
(sent over the wire in ``error`` frames) and a message that says what to do.
Anything else that escapes is a bug and is reported with a traceback.

Must not import anything beyond the standard library.
"""

from __future__ import annotations


class OpenClawError(Exception):
    """Base of every user-facing error; ``code`` travels in ``error`` frames."""

    code = "internal"
    exit_code = 1
    # The turn an error ended, when a turn request failed: its trace is stored
    # under this id (``openclaw trace show``). Set from the ``error`` frame.
    turn_id = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ProtocolError(OpenClawError):
    """A frame was malformed, too large, or of an unknown type."""

    code = "protocol"


class VersionMismatchError(ProtocolError):
    code = "version_mismatch"


class DaemonUnavailableError(OpenClawError):
    """The daemon is not running, failed to start, or went away mid-turn."""

    code = "daemon_unavailable"


class DaemonBusyError(OpenClawError):
    code = "busy"


class ModelError(OpenClawError):
    """The model file is missing, not GGUF, or failed to load."""

    code = "model"


class ContextOverflowError(OpenClawError):
    """The prompt does not fit the model's context window."""

    code = "context_overflow"


class KvSlotError(ContextOverflowError):
    """llama.cpp found no KV slot for a batch (``llama_decode`` returned 1): the
    window is full. Recoverable: the caller compacts the session and retries once."""

    code = "kv_slot"


class TurnTimeoutError(OpenClawError):
    code = "timeout"
    exit_code = 124


class CancelledError(OpenClawError):
    code = "cancelled"


class SessionError(OpenClawError):
    """A session is unknown, or its transcript cannot be read."""

    code = "session"


class PermissionDeniedError(OpenClawError):
    """The socket or state dir belongs to another user or has unsafe modes."""

    code = "permission"


class StateDirError(OpenClawError):
    """The state dir is a file, read-only, unwritable or on a full disk."""

    code = "state_dir"


class BadRequestError(OpenClawError):
    """A request or option the user can fix (the usage-error exit code)."""

    code = "bad_request"
    exit_code = 2


class NotFoundError(OpenClawError):
    """Something the user named (a recorded turn, say) does not exist."""

    code = "not_found"


class ToolError(OpenClawError):
    """A tool call failed; its message goes back to the model as an error result."""

    code = "tool"


class CacheCorruptError(OpenClawError):
    """A KV cache file failed its integrity or fingerprint check (it is discarded)."""

    code = "cache_corrupt"


class ResourceError(OpenClawError):
    """The configuration will not fit in this machine's memory."""

    code = "resources"


class ConfigError(OpenClawError):
    """``openclaw.json`` is unreadable, not JSON5, or names something that does not exist."""

    code = "config"
    exit_code = 2


class UpstreamError(OpenClawError):
    """An upstream engine (llama-server, vLLM, ...) refused, failed or went away.

    ``retryable`` says whether the same request may be sent again (nothing was
    streamed to the user and no tool ran); ``retry_after`` is the server's own
    ``Retry-After`` in seconds, when it gave one."""

    code = "upstream"

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        retryable: bool = False,
        retry_after: float = 0.0,
        status: int = 0,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status  # the HTTP status it answered; 0 when none arrived


class UpstreamContextOverflowError(ContextOverflowError, UpstreamError):
    """The upstream said the prompt exceeds its context: compact and retry once.
    Both a context overflow (the pipeline compacts) and an upstream error (fallback
    and probe code that catches UpstreamError sees it); never retried as is."""

    code = "upstream_context_overflow"


_BY_CODE = {
    cls.code: cls
    for cls in (
        OpenClawError,
        ProtocolError,
        VersionMismatchError,
        DaemonUnavailableError,
        DaemonBusyError,
        ModelError,
        ContextOverflowError,
        KvSlotError,
        TurnTimeoutError,
        CancelledError,
        SessionError,
        PermissionDeniedError,
        StateDirError,
        BadRequestError,
        NotFoundError,
        CacheCorruptError,
        ResourceError,
        ToolError,
        ConfigError,
        UpstreamError,
        UpstreamContextOverflowError,
    )
}


def error_from_wire(code: str, message: str, hint: str = "") -> OpenClawError:
    """Rebuild the typed error a daemon sent, so the CLI can handle it by type."""
    return _BY_CODE.get(code, OpenClawError)(message, hint=hint)
