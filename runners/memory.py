"""Memory readings, taken where the memory is.

A worker reads its device (free and total bytes) and measures what loading a model used; the bridge reads the
machine's RAM for its default budget. torch is looked up only in a worker whose runner needs it, never imported by the
bridge: the CPU figures come from the operating system.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any


def ram_total() -> int:
    """The machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def ram_available() -> int | None:
    """Memory the system can hand out without swapping (Linux's MemAvailable); None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def process_bytes() -> int:
    """This process's resident memory: /proc/self/statm where there is one, else the peak from getrusage."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS says bytes, Linux KiB


def _torch() -> Any:
    return sys.modules.get("torch")


def allocated(device: str) -> int:
    """What this process holds on ``device`` now: torch's allocated bytes on CUDA and MPS, resident memory on CPU."""
    torch = _torch()
    if device == "cuda" and torch is not None:
        return int(torch.cuda.memory_allocated())
    if device == "mps" and torch is not None:
        return int(torch.mps.current_allocated_memory())
    return process_bytes()


def reading(device: str) -> dict[str, Any]:
    """``device``'s free and total bytes: from ``torch.cuda.mem_get_info`` on CUDA, the machine's RAM elsewhere (MPS
    shares it). ``free_bytes`` is None where the system does not say."""
    torch = _torch()
    if device == "cuda" and torch is not None:
        free, total = torch.cuda.mem_get_info()
        return {"device": device, "free_bytes": int(free), "total_bytes": int(total)}
    return {"device": device, "free_bytes": ram_available(), "total_bytes": ram_total()}
