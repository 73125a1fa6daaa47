"""How much memory this machine can give a new allocation now (Linux: ``MemAvailable``)."""

from __future__ import annotations

import os


def available_bytes() -> int | None:
    """Bytes the kernel says a new allocation can take without swapping, or None where it
    cannot be read (then nothing is refused on its account)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gigabytes(n: float) -> str:
    """``12.3 GB``: sizes in messages."""
    return f"{n / 1e9:,.1f} GB"
