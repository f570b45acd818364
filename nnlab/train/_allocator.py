"""Freed memory kept in the process, so that XLA:CPU's temporaries stop costing page faults.

A compiled program allocates its temporaries anew on every call, and glibc's malloc returns
large freed blocks to the OS (blocks of their own mapping, trimmed heap tops, per-thread
arenas): every training step then writes into fresh pages. The Flax example CNN's step
(batch 128) took 21,000 page faults and 136 ms on this project's 2-core CPU, and 87 ms with
none (benchmarks/README.md). One arena, no separately mapped blocks and no trimming keep the
memory for reuse; the cost is that the process holds on to its peak heap until it exits.
Measured on 2 cores only: with many threads allocating at once one arena may contend.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) options of glibc
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_KEEP = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))


def keep_freed_memory() -> bool:
    """Asks glibc's malloc to keep freed memory for reuse (one arena, nothing returned to the OS);
    True where applied (Linux with glibc; elsewhere nothing changes). Call it before the first
    JAX computation: threads that have allocated already keep their own arenas. The `nnlab`
    command calls it (NNLAB_KEEP_FREED_MEMORY=0 switches that off); `import nnlab` never does."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library the process runs with
    applied = [libc.mallopt(option, value) == 1 for option, value in _KEEP]
    return all(applied)
