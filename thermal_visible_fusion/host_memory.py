"""
Keep freed frame-sized buffers in the process instead of handing them back to the OS.

A frame through the learned fuser allocates and frees tens of MB of temporaries.  glibc
serves each block above its mmap threshold (128 kB, adapting upwards) with a fresh mapping
whose pages fault in, zero-filled, on first touch: thousands of page faults a frame, a few
ms of a ~25 ms frame on a small CPU.  Raising the mmap threshold and the trim threshold
keeps those blocks in the heap for the next frame; what stays cached is bounded by the
trim threshold.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for it on 64-bit
TRIM_THRESHOLD = 128 << 20  # freed heap kept for reuse, at most


def retain_freed_memory() -> bool:
    """Tune glibc's malloc for frame-sized temporaries; False where that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
