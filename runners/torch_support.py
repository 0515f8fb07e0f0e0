"""What every torch-based runner needs alike: device and dtype from the settings, out-of-memory detection, and
freeing memory. torch is passed in or looked up, never imported here, so the worker and the registry stay light."""

from __future__ import annotations

import gc
import sys
from typing import Any

from runners.contract import RunnerSettings


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA or CPU allocation failure, whatever the library wrapped it in."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate" in text or "out of memory" in text.lower())


def device_and_dtype(settings: RunnerSettings, torch: Any) -> tuple[str, Any]:
    """``auto`` picks CUDA (float16), then Apple's MPS, then the CPU (float32); explicit settings win."""
    device = settings.device
    if device == "auto":
        mps = getattr(torch.backends, "mps", None)
        device = "cuda" if torch.cuda.is_available() else ("mps" if mps and mps.is_available() else "cpu")
    if settings.dtype == "auto":
        dtype = torch.float16 if device == "cuda" else torch.float32
    else:
        dtype = getattr(torch, settings.dtype)
    return device, dtype


def free_memory() -> None:
    """Collect dropped models now and hand cached GPU memory back (a no-op when torch was never imported)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
