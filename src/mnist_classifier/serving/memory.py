"""Memory policy of a server process."""

from __future__ import annotations

__all__ = ["return_freed_memory"]


def return_freed_memory() -> None:
    """Have glibc give large freed blocks back to the system at once (uploads are large).

    By default glibc raises its mmap threshold after the first large block is freed, so
    later request bodies come from the heap and stay in the process after the client has
    gone. A fixed threshold keeps every block over 128 KiB in its own mapping, returned on
    free. Nothing happens with another C library.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return
    if mallopt is not None:
        m_mmap_threshold = -3
        mallopt(m_mmap_threshold, 128 * 1024)
