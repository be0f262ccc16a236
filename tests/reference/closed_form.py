"""The closed-form matting system of pymatting's `cf_laplacian` (Levin, Lischinski, Weiss, "A Closed-Form Solution
to Natural Image Matting", PAMI 2008), sliced to the unknown rows: what `p3m.infer.closed_form` must build."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def reference_system(image: np.ndarray, unknown: np.ndarray, known: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """(L_UU, -L_UK a_K) from pymatting's whole-image Laplacian, rows and columns in raster order."""
    from p3m.pymatting_import import import_pymatting

    laplacian = import_pymatting().cf_laplacian(image, epsilon=1e-7, radius=1).tocsr()
    u = unknown.ravel()
    return laplacian[u][:, u].tocsr(), -(laplacian[u][:, ~u] @ known.ravel()[~u])
