"""The names of the bundled models, on the ground floor so that the settings can check a `model`
without importing the models themselves. `rag.models.bundled.REGISTRY` describes each (packages, size,
checksum) under the same names, in the same order (tests/test_llm.py checks both)."""
from __future__ import annotations

BUNDLED_MODELS: tuple[str, ...] = ("qwen2.5-1.5b", "qwen2.5-0.5b", "smollm2-135m")
DEFAULT_MODEL = "qwen2.5-1.5b"
