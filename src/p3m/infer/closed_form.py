"""Closed-form matting (Levin, Lischinski & Weiss, PAMI 2008) solved on the unknown band of a trimap only.

pymatting's `estimate_alpha_cf` builds the matting Laplacian of every pixel of the image (n x 25 values and
indices), slices the unknown rows out of it and factorises them with a thresholded incomplete Cholesky, which on
these bands often breaks down and is retried with diagonal shifts: 0.5-1.1 s on a 1024 px portrait. Here only
the 3x3 windows that touch an unknown pixel are visited and only the unknown rows are stored (time and memory
follow the band: 0.2-0.3 s for the ~50k unknown pixels of a portrait at 1024 px), and the
system L_UU a_U = -L_UK a_K is solved by conjugate gradients with a zero-fill incomplete Cholesky
preconditioner (IC(0): the factor has the matrix's own sparsity), started from a guess. Same equations and
windows as pymatting (radius 1, epsilon 1e-7), agreeing with it to the solver tolerance
(tests/test_portrait.py).

Some images make the system numerically indefinite: in a palette or posterised image many windows hold two or
three exact colours, their covariance is singular to within epsilon, and the rounding of its inverse leaves
rows with a negative diagonal (seen on 9 of 192 small palette/posterised copies of real portraits). No
incomplete factor exists then, so `solve_band` falls back in order: epsilon x10 and x100 (stronger
regularisation: singular windows become well conditioned; epsilon 1e-6 already solved every case seen), a
Jacobi preconditioner (always defined) at the strongest epsilon, and finally the starting guess itself (the
caller's mask). `BandSolution.method` names the step that answered; it is never an exception.

Compiled with numba (a dependency; pymatting uses it too): about 6 s on first use, then cached (`cache=True`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["BandSolution", "band_laplacian", "conjugate_gradients", "solve_alpha", "solve_band", "warm_up"]

# the fallbacks of `solve_band`, in order: epsilon multipliers tried with IC(0), then Jacobi at the last one
EPS_STEPS = (1.0, 10.0, 100.0)


@njit(cache=True, nogil=True)
def _accumulate(image, index, known, centres_y, centres_x, eps, values, rhs):  # pragma: no cover - numba
    """Add each listed 3x3 window's Laplacian terms to the unknown rows: values (nU, 5, 5), rhs (nU,)."""
    inv_area = 1.0 / 9.0
    c = np.empty((9, 3))
    ids = np.empty(9, np.int64)
    ys = np.empty(9, np.int64)
    xs = np.empty(9, np.int64)
    for n in range(centres_y.shape[0]):
        y, x = centres_y[n], centres_x[n]
        m0 = m1 = m2 = 0.0
        k = 0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                ys[k], xs[k] = y + dy, x + dx
                ids[k] = index[y + dy, x + dx]
                m0 += image[y + dy, x + dx, 0]
                m1 += image[y + dy, x + dx, 1]
                m2 += image[y + dy, x + dx, 2]
                k += 1
        m0 *= inv_area
        m1 *= inv_area
        m2 *= inv_area
        a00 = a01 = a02 = a11 = a12 = a22 = 0.0
        for k in range(9):
            c0 = image[ys[k], xs[k], 0] - m0
            c1 = image[ys[k], xs[k], 1] - m1
            c2 = image[ys[k], xs[k], 2] - m2
            c[k, 0], c[k, 1], c[k, 2] = c0, c1, c2
            a00 += c0 * c0
            a01 += c0 * c1
            a02 += c0 * c2
            a11 += c1 * c1
            a12 += c1 * c2
            a22 += c2 * c2
        # window covariance + eps / |w| on the diagonal (Levin's regulariser), inverted by cofactors
        a00 = (a00 + eps) * inv_area
        a11 = (a11 + eps) * inv_area
        a22 = (a22 + eps) * inv_area
        a01 *= inv_area
        a02 *= inv_area
        a12 *= inv_area
        i00 = a11 * a22 - a12 * a12
        i01 = a02 * a12 - a01 * a22
        i02 = a01 * a12 - a02 * a11
        i11 = a00 * a22 - a02 * a02
        i12 = a01 * a02 - a00 * a12
        i22 = a00 * a11 - a01 * a01
        inv_det = 1.0 / (a00 * i00 + a01 * i01 + a02 * i02)
        for i in range(9):
            row = ids[i]
            if row < 0:
                continue
            s, t, u = c[i, 0], c[i, 1], c[i, 2]
            g0 = (i00 * s + i01 * t + i02 * u) * inv_det
            g1 = (i01 * s + i11 * t + i12 * u) * inv_det
            g2 = (i02 * s + i12 * t + i22 * u) * inv_det
            for j in range(9):
                v = -(1.0 + g0 * c[j, 0] + g1 * c[j, 1] + g2 * c[j, 2]) * inv_area
                if i == j:
                    v += 1.0
                if ids[j] >= 0:
                    values[row, ys[j] - ys[i] + 2, xs[j] - xs[i] + 2] += v
                else:  # known neighbour: moves to the right-hand side
                    rhs[row] -= v * known[ys[j], xs[j]]


@njit(cache=True, nogil=True)
def _to_csr(index, uy, ux, values):  # pragma: no cover - numba
    """(indptr, indices, data) of the unknown rows: the unknown neighbours within 2 px, columns ascending."""
    h, w = index.shape
    n = uy.shape[0]
    indptr = np.zeros(n + 1, np.int64)
    indices = np.empty(n * 25, np.int32)
    data = np.empty(n * 25, np.float64)
    q = 0
    for r in range(n):
        for dy in range(-2, 3):
            y = uy[r] + dy
            if y < 0 or y >= h:
                continue
            for dx in range(-2, 3):
                x = ux[r] + dx
                if x < 0 or x >= w or index[y, x] < 0:
                    continue
                indices[q] = index[y, x]
                data[q] = values[r, dy + 2, dx + 2]
                q += 1
        indptr[r + 1] = q
    return indptr, indices[:q], data[:q]


def band_laplacian(
    image: np.ndarray, unknown: np.ndarray, known_alpha: np.ndarray, eps: float = 1e-7
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """((indptr, indices, data) of L_UU in CSR, rhs = -L_UK a_K, flat indices of the unknown pixels).

    image HxWx3 float64 in [0, 1]; unknown HxW bool; known_alpha HxW float64 (read where not unknown).
    """
    h, w = unknown.shape
    flat = np.flatnonzero(unknown)
    index = np.full((h, w), -1, dtype=np.int64)
    index.ravel()[flat] = np.arange(flat.size)
    # window centres: pixels within one step of an unknown pixel, not on the image border (as pymatting)
    near = np.zeros((h + 2, w + 2), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            near[dy : dy + h, dx : dx + w] |= unknown
    near = near[1 : h + 1, 1 : w + 1]
    near[[0, -1], :] = False
    near[:, [0, -1]] = False
    cy, cx = np.nonzero(near)
    values = np.zeros((flat.size, 5, 5))
    rhs = np.zeros(flat.size)
    _accumulate(
        np.ascontiguousarray(image, dtype=np.float64),
        index,
        np.ascontiguousarray(known_alpha, dtype=np.float64),
        cy.astype(np.int64),
        cx.astype(np.int64),
        float(eps),
        values,
        rhs,
    )
    uy, ux = np.divmod(flat, w)
    return _to_csr(index, uy.astype(np.int64), ux.astype(np.int64), values), rhs, flat


@njit(cache=True, nogil=True)
def _ic0(indptr, indices, data, shift):  # pragma: no cover - numba
    """Zero-fill incomplete Cholesky L (CSR, each row's diagonal last) of a symmetric CSR matrix.

    The diagonal is scaled by 1 + shift; returns ok=False at a non-positive pivot (the caller shifts more).
    """
    n = indptr.shape[0] - 1
    lptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        c = 0
        for p in range(indptr[i], indptr[i + 1]):
            if indices[p] <= i:
                c += 1
        lptr[i + 1] = lptr[i] + c
    lidx = np.empty(lptr[n], np.int32)
    lval = np.empty(lptr[n], np.float64)
    mark = np.full(n, -1, np.int64)  # position of column j in the current row of L, -1 if absent
    for i in range(n):
        q = lptr[i]
        for p in range(indptr[i], indptr[i + 1]):
            if indices[p] <= i:
                lidx[q] = indices[p]
                lval[q] = data[p]
                q += 1
        last = lptr[i + 1] - 1
        if lidx[last] != i:  # no diagonal entry: not a matrix this solver makes
            return lptr, lidx, lval, False
        for q in range(lptr[i], lptr[i + 1]):
            mark[lidx[q]] = q
        for q in range(lptr[i], last):
            k = lidx[q]
            s = lval[q]
            for r in range(lptr[k], lptr[k + 1] - 1):  # L[i, j] L[k, j] over the shared columns j < k
                m = mark[lidx[r]]
                if m >= 0 and m < q:
                    s -= lval[m] * lval[r]
            lval[q] = s / lval[lptr[k + 1] - 1]
        d = lval[last] * (1.0 + shift)
        for q in range(lptr[i], last):
            d -= lval[q] * lval[q]
        for q in range(lptr[i], lptr[i + 1]):
            mark[lidx[q]] = -1
        if not d > 0.0:
            return lptr, lidx, lval, False
        lval[last] = np.sqrt(d)
    return lptr, lidx, lval, True


@njit(cache=True, nogil=True)
def _pcg(indptr, indices, data, lptr, lidx, lval, b, x, rtol, maxiter):  # pragma: no cover - numba
    """Conjugate gradients on A x = b (A in CSR), preconditioner (L L^T)^-1; x updated in place; iterations."""
    n = b.shape[0]
    r = np.empty(n)
    z = np.empty(n)
    p = np.empty(n)
    q = np.empty(n)
    nb = np.sqrt(np.sum(b * b))
    if nb == 0.0:
        nb = 1.0
    for i in range(n):
        s = b[i]
        for t in range(indptr[i], indptr[i + 1]):
            s -= data[t] * x[indices[t]]
        r[i] = s
    rz_old = 1.0
    it = 0
    while it < maxiter:
        if np.sqrt(np.sum(r * r)) <= rtol * nb:
            break
        for i in range(n):  # forward: L y = r
            s = r[i]
            for t in range(lptr[i], lptr[i + 1] - 1):
                s -= lval[t] * z[lidx[t]]
            z[i] = s / lval[lptr[i + 1] - 1]
        for i in range(n - 1, -1, -1):  # backward: L^T z = y, column by column
            zi = z[i] / lval[lptr[i + 1] - 1]
            z[i] = zi
            for t in range(lptr[i], lptr[i + 1] - 1):
                z[lidx[t]] -= lval[t] * zi
        rz = np.sum(r * z)
        if it == 0:
            p[:] = z
        else:
            p[:] = z + (rz / rz_old) * p
        rz_old = rz
        pq = 0.0
        for i in range(n):
            s = 0.0
            for t in range(indptr[i], indptr[i + 1]):
                s += data[t] * p[indices[t]]
            q[i] = s
            pq += p[i] * s
        if not pq > 0.0:
            break
        a = rz / pq
        x += a * p
        r -= a * q
        it += 1
    return it


def _jacobi(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Jacobi preconditioner as a diagonal-only 'factor' L = sqrt(|diag|) in the layout `_pcg` reads."""
    n = indptr.shape[0] - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    diag = np.zeros(n)
    np.add.at(diag, rows[indices == rows], data[indices == rows])
    scale = float(np.abs(diag).max()) if n else 1.0
    lval = np.sqrt(np.maximum(np.abs(diag), 1e-12 * max(scale, 1e-300)))
    return np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int32), lval


def conjugate_gradients(
    csr: tuple[np.ndarray, np.ndarray, np.ndarray],
    rhs: np.ndarray,
    x0: np.ndarray,
    *,
    rtol: float = 1e-4,
    maxiter: int = 1000,
    preconditioner: str = "ic0",
) -> tuple[np.ndarray, int]:
    """(x, iterations) solving the SPD system (CSR, rows with sorted columns) by preconditioned CG.

    preconditioner "ic0": zero-fill incomplete Cholesky. Its factorisation can break down on a matrix that is
    not diagonally dominant; the diagonal is then scaled up a little (Manteuffel's shift), which weakens the
    preconditioner but not the solution; when no shift up to 10x gives a factor (the matrix is not positive
    definite), raises `np.linalg.LinAlgError`. "jacobi": the diagonal's magnitude (always defined).
    """
    indptr, indices, data = csr
    if preconditioner == "jacobi":
        lptr, lidx, lval = _jacobi(indptr, indices, data)
    elif preconditioner == "ic0":
        for shift in (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
            lptr, lidx, lval, ok = _ic0(indptr, indices, data, shift)
            if ok:
                break
        else:
            raise np.linalg.LinAlgError("no incomplete Cholesky factor: the matrix is not positive definite")
    else:
        raise ValueError(f"preconditioner must be 'ic0' or 'jacobi', got {preconditioner!r}")
    x = np.array(x0, dtype=np.float64)
    it = _pcg(indptr, indices, data, lptr, lidx, lval, np.asarray(rhs, dtype=np.float64), x, float(rtol), int(maxiter))
    return x, it


@dataclass(frozen=True)
class BandSolution:
    """What `solve_band` computed: ``alpha`` HxW float32 in [0, 1]; ``method`` the step that answered:
    "ic0" (the normal solve), "ic0, eps xN" (stronger regularisation), "jacobi, eps xN" (the other
    preconditioner), "guess" (no solve succeeded: the starting guess), "none" (nothing unknown);
    ``iterations`` of conjugate gradients (0 for "guess" and "none")."""

    alpha: np.ndarray
    method: str
    iterations: int

    @property
    def fell_back(self) -> bool:
        """True when the normal solve did not answer."""
        return self.method not in ("ic0", "none")


def solve_band(
    image: np.ndarray,
    trimap: np.ndarray,
    guess: np.ndarray | None = None,
    *,
    eps: float = 1e-7,
    rtol: float = 1e-4,
    maxiter: int = 1000,
    ridge: float = 1e-6,
) -> BandSolution:
    """Alpha of a {0, 128, 255} trimap's unknown pixels by closed-form matting, never failing (module doc).

    image: HxWx3 uint8, or float in [0, 1]. `guess` (HxW in [0, 1], default 0.5) starts the iteration and is
    the target of a `ridge`-weighted data term, which keeps the system positive definite where an unknown
    pixel is in no window (images under 3 px) or an unknown region touches no known pixel; 1e-6 is far below
    the Laplacian's own weights. When every solve fails, the unknown pixels take the guess (method "guess").
    """
    unknown = trimap == 128
    alpha = (trimap == 255).astype(np.float32)
    if not unknown.any():
        return BandSolution(alpha, "none", 0)
    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    flat = np.flatnonzero(unknown)
    start = np.full(flat.size, 0.5) if guess is None else np.clip(np.asarray(guess, np.float64).ravel()[flat], 0, 1)
    attempts = [("ic0", k) for k in EPS_STEPS] + [("jacobi", EPS_STEPS[-1])]
    for preconditioner, factor in attempts:
        (indptr, indices, data), rhs, _ = band_laplacian(img, unknown, alpha.astype(np.float64), eps * factor)
        # the ridge: on the diagonal (always stored: each unknown pixel is its own neighbour) and in the rhs
        diagonal = indices == np.repeat(np.arange(flat.size), np.diff(indptr))
        data[diagonal] += ridge
        try:
            x, it = conjugate_gradients(
                (indptr, indices, data),
                rhs + ridge * start,
                start,
                rtol=rtol,
                maxiter=maxiter,
                preconditioner=preconditioner,
            )
        except np.linalg.LinAlgError:
            continue
        if np.isfinite(x).all():
            method = preconditioner if factor == 1.0 else f"{preconditioner}, eps x{factor:g}"
            alpha.ravel()[flat] = np.clip(x, 0.0, 1.0)
            return BandSolution(alpha, method, it)
    alpha.ravel()[flat] = start
    return BandSolution(alpha, "guess", 0)


def solve_alpha(image: np.ndarray, trimap: np.ndarray, guess: np.ndarray | None = None, **options: float) -> np.ndarray:
    """HxW float32 alpha in [0, 1] from an HxWx3 image (uint8, or float in [0, 1]) and a {0, 128, 255} trimap:
    `solve_band(image, trimap, guess, **options).alpha` (options: eps, rtol, maxiter, ridge)."""
    return solve_band(image, trimap, guess, **options).alpha  # type: ignore[arg-type]


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel by solving a tiny problem: `make setup` runs it."""
    image = np.linspace(0, 255, 8 * 8 * 3).reshape(8, 8, 3).astype(np.uint8)
    trimap = np.zeros((8, 8), np.uint8)
    trimap[:, 3:5] = 128
    trimap[:, 5:] = 255
    solve_alpha(image, trimap)
