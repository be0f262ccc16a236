"""Importing pymatting through p3m keeps PyTorch's thread count (numba's OpenMP layer would reset it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import torch
torch.set_num_threads(1)
torch.nn.functional.conv2d(torch.rand(1, 3, 32, 32), torch.rand(4, 3, 3, 3))  # PyTorch's pool is running
from p3m.pymatting_import import import_pymatting
pm = import_pymatting()
assert pm.estimate_alpha_cf is not None
print(torch.get_num_threads())
"""


def _threads_after(script: str) -> int:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.subprocess
def test_import_keeps_torch_threads():
    assert _threads_after(SCRIPT) == 1
