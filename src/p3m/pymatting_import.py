"""pymatting, imported without changing PyTorch's CPU thread count.

Importing pymatting starts numba's OpenMP threading layer, which resizes the OpenMP pool PyTorch shares to
numba's thread count (torch 2.13 + numba 0.68: `torch.set_num_threads(1)` silently becomes 2 once PyTorch has
run a parallel region). That overrides the user's choice and changes PyTorch's results in their last bits.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["import_pymatting"]


def import_pymatting() -> ModuleType:
    """The pymatting module; PyTorch's thread count is the same before and after the first import.

    numba compiles all of pymatting's kernels on its first import (about a minute) and caches them: next to
    pymatting's sources when that folder is writable (a virtual environment; `make setup` does it there), else
    in numba's per-user cache, or in $NUMBA_CACHE_DIR when set.
    """
    if "pymatting" in sys.modules:
        return sys.modules["pymatting"]
    torch = sys.modules.get("torch")  # nothing to protect when PyTorch is not loaded
    threads = torch.get_num_threads() if torch is not None else None
    import pymatting

    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return pymatting
