"""The band-only closed-form solver's parts (p3m.infer.closed_form) against literal references: the matting
Laplacian of pymatting's `cf_laplacian` sliced to the unknown rows, and scipy's direct sparse solve.

The solver stores only the lower triangle and runs conjugate gradients on it with a float32 preconditioner: the
system must still be the whole Laplacian's, and the answer the exact solution's to the tolerance asked for.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from p3m.infer import closed_form
from p3m.infer.closed_form import band_laplacian, conjugate_gradients, solve_band
from tests.reference.closed_form import reference_system
from tests.scenes import small_problem


def as_matrix(csr: tuple[np.ndarray, np.ndarray, np.ndarray]) -> sp.csr_matrix:
    indptr, indices, data = csr
    n = indptr.size - 1
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def test_band_laplacian_is_pymattings_laplacian_on_the_unknown_rows():
    image, unknown, known = small_problem()
    ref, ref_rhs = reference_system(image, unknown, known)
    full, rhs, flat = band_laplacian(image, unknown, known)
    assert np.array_equal(flat, np.flatnonzero(unknown))
    # the windows' 3x3 covariances are inverted by another formula there: near-singular ones (flat colour, epsilon
    # 1e-7) round differently, by about 1e-7 of the largest entry
    scale = np.abs(ref.data).max()
    assert np.abs((as_matrix(full) - ref).toarray()).max() < 1e-6 * scale
    assert np.abs(rhs - ref_rhs).max() < 1e-6 * scale


def test_lower_band_laplacian_is_the_lower_triangle_with_the_diagonal_last():
    image, unknown, known = small_problem()
    full, rhs, _ = band_laplacian(image, unknown, known)
    lower, lower_rhs, _ = band_laplacian(image, unknown, known, lower=True)
    indptr, indices, _ = lower
    assert np.array_equal(indices[indptr[1:] - 1], np.arange(indptr.size - 1))  # each row ends on its diagonal
    rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    assert (indices <= rows).all() and (np.diff(indices)[rows[1:] == rows[:-1]] > 0).all()  # columns ascending
    assert np.array_equal(as_matrix(lower).toarray(), np.tril(as_matrix(full).toarray()))
    assert np.array_equal(lower_rhs, rhs)


@pytest.mark.parametrize("preconditioner", ["ic0", "jacobi"])
def test_conjugate_gradients_reach_scipys_direct_solution(preconditioner):
    image, unknown, known = small_problem()
    ref, ref_rhs = reference_system(image, unknown, known)
    ridge = 1e-6
    exact = sla.spsolve((ref + ridge * sp.identity(ref.shape[0])).tocsc(), ref_rhs + ridge * 0.5)
    (indptr, indices, data), rhs, _ = band_laplacian(image, unknown, known, lower=True)
    data[indptr[1:] - 1] += ridge
    x, iterations = conjugate_gradients(
        (indptr, indices, data), rhs + ridge * 0.5, np.full(rhs.size, 0.5), rtol=1e-12, preconditioner=preconditioner
    )
    assert iterations > 0 and np.abs(x - exact).max() < 1e-6
    # a looser tolerance stops earlier, and the residual it reaches is within it
    loose, few = conjugate_gradients(
        (indptr, indices, data), rhs + ridge * 0.5, np.full(rhs.size, 0.5), rtol=1e-3, preconditioner=preconditioner
    )
    full = ref + ridge * sp.identity(ref.shape[0])
    assert few < iterations
    assert np.linalg.norm(full @ loose - (ref_rhs + ridge * 0.5)) <= 1e-3 * np.linalg.norm(ref_rhs + ridge * 0.5)


def test_incomplete_cholesky_factor_is_exact_on_a_matrix_without_fill():
    """On a tridiagonal matrix IC(0) drops nothing: M M^T is the matrix (to float32, the factor's precision)."""
    n = 30
    rng = np.random.default_rng(1)
    off = -rng.random(n - 1)
    diag = 2.0 + rng.random(n)
    dense = np.diag(diag) + np.diag(off, -1) + np.diag(off, 1)
    lower = sp.csr_matrix(np.tril(dense))
    lower.sort_indices()
    factor, ok = closed_form._ic0(lower.indptr.astype(np.int64), lower.indices, lower.data, 0.0)
    assert ok and factor.dtype == np.float32
    m = sp.csr_matrix((factor.astype(np.float64), lower.indices, lower.indptr), shape=(n, n)).toarray()
    assert np.abs(m @ m.T - dense).max() < 1e-5
    # a matrix that is not positive definite has no factor
    _, ok = closed_form._ic0(lower.indptr.astype(np.int64), lower.indices, -lower.data, 0.0)
    assert not ok


def test_solve_band_matches_the_exact_solution_of_pymattings_system():
    image, unknown, known = small_problem()
    ref, ref_rhs = reference_system(image, unknown, known)
    trimap = np.where(known > 0.5, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    exact = sla.spsolve(ref.tocsc(), ref_rhs)
    solution = solve_band(image, trimap, rtol=1e-10, ridge=0.0)
    assert solution.method == "ic0"
    assert np.abs(solution.alpha[unknown] - np.clip(exact, 0, 1)).max() < 1e-4
