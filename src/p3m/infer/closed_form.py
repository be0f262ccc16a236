"""Closed-form matting (Levin, Lischinski & Weiss, PAMI 2008) solved on the unknown band of a trimap only.

pymatting's `estimate_alpha_cf` builds the matting Laplacian of every pixel of the image (n x 25 values and
indices), slices the unknown rows out of it and factorises them with a thresholded incomplete Cholesky, which on
these bands often breaks down and is retried with diagonal shifts: 0.5-1.1 s on a 1024 px portrait. Here only
the 3x3 windows that touch an unknown pixel are visited and only the lower triangle of the unknown rows is
computed and stored (the matrix is symmetric; time and memory follow the band), and the system
L_UU a_U = -L_UK a_K is solved by conjugate gradients with a zero-fill incomplete Cholesky preconditioner (IC(0):
the factor has the matrix's own sparsity; kept in float32, which a preconditioner needs no more than), started
from a guess. Each iteration reads the lower triangle once for the product with both triangles, in rows of one
width, and the vectors in fused loops without temporaries: 0.10 s instead of 0.16 s (thread CPU time) for the
~45k unknown pixels of a portrait at 1024 px on the 2-core CPU dev machine, the same iterations to within one
(benchmarks/bench_solver.py, benchmarks/RESULTS.md, issue 22). Same equations and windows as pymatting (radius
1, epsilon 1e-7): the Laplacian agrees with its `cf_laplacian`, the solution with a direct solve
(tests/test_closed_form.py, tests/test_portrait.py).

Some images make the system numerically indefinite: in a palette or posterised image many windows hold two or
three exact colours, their covariance is singular to within epsilon, and the rounding of its inverse leaves
rows with a negative diagonal (seen on 9 of 192 small palette/posterised copies of real portraits). No
incomplete factor exists then, so `solve_band` falls back in order: epsilon x10 and x100 (stronger
regularisation: singular windows become well conditioned; epsilon 1e-6 already solved every case seen), a
Jacobi preconditioner (always defined) at the strongest epsilon, and finally the starting guess itself (the
caller's mask). `BandSolution.method` names the step that answered; it is never an exception.

Compiled with numba (a dependency; pymatting uses it too): about 6 s on first use, then cached (`cache=True`).
Every kernel is ``nogil``: two threads solve two images at once (`p3m.infer.batch.matte_here`). None is
``parallel``: numba's OpenMP layer would resize the thread pool PyTorch shares (`p3m.pymatting_import`), and its
other layers are either absent (TBB) or not safe to call from two threads at once (workqueue).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = [
    "METHODS",
    "BandSolution",
    "band_laplacian",
    "conjugate_gradients",
    "solve_alpha",
    "solve_band",
    "tiny_problem",
    "warm_up",
]

# the fallbacks of `solve_band`, in order: epsilon multipliers tried with IC(0), then Jacobi at the last one
EPS_STEPS = (1.0, 10.0, 100.0)


def _method(preconditioner: str, factor: float) -> str:
    """`BandSolution.method` of a solve with this preconditioner at this multiple of the epsilon asked for."""
    return preconditioner if factor == 1.0 else f"{preconditioner}, eps x{factor:g}"


# every `BandSolution.method`, from nothing to solve through the normal solve and its fallbacks to the guess
METHODS = ("none", *(_method("ic0", k) for k in EPS_STEPS), _method("jacobi", EPS_STEPS[-1]), "guess")


@njit(cache=True, nogil=True)
def _accumulate(image, scale, index, known, centres_y, centres_x, eps, lower, values, rhs):  # pragma: no cover
    """Add each listed 3x3 window's Laplacian terms to the unknown rows: values (nU, 3 or 5, 5), rhs (nU,).

    image: its values divided by ``scale`` are in [0, 1] (a uint8 image is read as it is: no float copy of it).
    ``lower``: only the entries of unknown neighbours that come first in raster order, and the diagonal (the
    matrix is symmetric: the other half is never computed; they are the rows dy <= 0 of the 5x5 offsets)."""
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
                c[k, 0] = image[y + dy, x + dx, 0] / scale
                c[k, 1] = image[y + dy, x + dx, 1] / scale
                c[k, 2] = image[y + dy, x + dx, 2] / scale
                m0 += c[k, 0]
                m1 += c[k, 1]
                m2 += c[k, 2]
                k += 1
        m0 *= inv_area
        m1 *= inv_area
        m2 *= inv_area
        a00 = a01 = a02 = a11 = a12 = a22 = 0.0
        for k in range(9):
            c0 = c[k, 0] - m0
            c1 = c[k, 1] - m1
            c2 = c[k, 2] - m2
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
                col = ids[j]
                if lower and col > row:  # the upper triangle: never stored, so not computed
                    continue
                v = -(1.0 + g0 * c[j, 0] + g1 * c[j, 1] + g2 * c[j, 2]) * inv_area
                if i == j:
                    v += 1.0
                if col < 0:  # known neighbour: moves to the right-hand side
                    rhs[row] -= v * known[ys[j], xs[j]]
                else:
                    values[row, ys[j] - ys[i] + 2, xs[j] - xs[i] + 2] += v


@njit(cache=True, nogil=True)
def _to_csr(index, uy, ux, values, lower):  # pragma: no cover - numba
    """(indptr, indices, data) of the unknown rows: the unknown neighbours within 2 px, columns ascending (raster
    order); ``lower``: only those up to the pixel itself, so that each row's diagonal comes last."""
    h, w = index.shape
    n = uy.shape[0]
    offsets = 13 if lower else 25  # the 5x5 offsets in raster order: the first 13 end at the centre
    indptr = np.zeros(n + 1, np.int64)
    indices = np.empty(n * offsets, np.int32)
    data = np.empty(n * offsets, np.float64)
    q = 0
    for r in range(n):
        for k in range(offsets):
            y = uy[r] + k // 5 - 2
            x = ux[r] + k % 5 - 2
            if y < 0 or y >= h or x < 0 or x >= w or index[y, x] < 0:
                continue
            indices[q] = index[y, x]
            data[q] = values[r, k // 5, k % 5]
            q += 1
        indptr[r + 1] = q
    return indptr, indices[:q], data[:q]


def band_laplacian(
    image: np.ndarray, unknown: np.ndarray, known_alpha: np.ndarray, eps: float = 1e-7, *, lower: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """((indptr, indices, data) of L_UU in CSR, rhs = -L_UK a_K, flat indices of the unknown pixels).

    image HxWx3 uint8, or float in [0, 1]; unknown HxW bool; known_alpha HxW float64 (read where not unknown). Rows and
    columns are the unknown pixels in raster order, each row's columns ascending. ``lower``: the lower triangle
    with the diagonal only (each row's last entry), as `conjugate_gradients` reads the symmetric matrix; about
    half the time and memory of the whole matrix.
    """
    h, w = unknown.shape
    flat = np.flatnonzero(unknown)
    index = np.full((h, w), -1, dtype=np.int32)
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
    values = np.zeros((flat.size, 3 if lower else 5, 5))
    rhs = np.zeros(flat.size)
    uint8 = image.dtype == np.uint8
    _accumulate(
        np.ascontiguousarray(image) if uint8 else np.ascontiguousarray(image, dtype=np.float64),
        255.0 if uint8 else 1.0,
        index,
        np.ascontiguousarray(known_alpha, dtype=np.float64),
        cy.astype(np.int64),
        cx.astype(np.int64),
        float(eps),
        lower,
        values,
        rhs,
    )
    uy, ux = np.divmod(flat, w)
    return _to_csr(index, uy.astype(np.int64), ux.astype(np.int64), values, lower), rhs, flat


@njit(cache=True, nogil=True)
def _ic0(indptr, indices, data, shift):  # pragma: no cover - numba
    """Zero-fill incomplete Cholesky factor L of a symmetric matrix given by its lower triangle (CSR, each row's
    diagonal last): L's values in the same layout, as float32 (a preconditioner needs no more; half the memory
    traffic of each iteration), and ok. The diagonal is scaled by 1 + shift; ok=False at a non-positive pivot."""
    n = indptr.shape[0] - 1
    lval = data.copy()
    mark = np.full(n, -1, np.int64)  # position of column j in the current row of L, -1 if absent
    for i in range(n):
        last = indptr[i + 1] - 1
        if last < indptr[i] or indices[last] != i:  # no diagonal entry: not a matrix this solver makes
            return lval.astype(np.float32), False
        for q in range(indptr[i], last + 1):
            mark[indices[q]] = q
        for q in range(indptr[i], last):
            k = indices[q]
            s = lval[q]
            for r in range(indptr[k], indptr[k + 1] - 1):  # L[i, j] L[k, j] over the shared columns j < k
                m = mark[indices[r]]
                if m >= 0 and m < q:
                    s -= lval[m] * lval[r]
            lval[q] = s / lval[indptr[k + 1] - 1]
        d = lval[last] * (1.0 + shift)
        for q in range(indptr[i], last):
            d -= lval[q] * lval[q]
        for q in range(indptr[i], last + 1):
            mark[indices[q]] = -1
        if not d > 0.0:
            return lval.astype(np.float32), False
        lval[last] = np.sqrt(d)
    return lval.astype(np.float32), True


@njit(cache=True, nogil=True)
def _fixed_width(indptr, indices, data, mval):  # pragma: no cover - numba
    """The lower triangle (CSR, diagonal last) and its factor in the same layout, as rows of one width: (columns
    (n, w) int32, A's values (n, w), A's diagonal (n,), the factor's values (n, w) float32, its diagonal (n,)), w the
    most entries left of a diagonal; a short row is padded with column n (a zero slot of `_pcg`'s vectors) and
    zeros, which leaves every sum as it is. Fixed-width rows let the compiler keep the inner loops tight: CG's
    iterations take about 2/3 of the time they take on the CSR arrays, with the same results."""
    n = indptr.shape[0] - 1
    w = 0
    for i in range(n):
        w = max(w, indptr[i + 1] - 1 - indptr[i])
    cols = np.full((n, w), n, np.int32)
    avals = np.zeros((n, w))
    mvals = np.zeros((n, w), np.float32)
    adiag = np.empty(n)
    mdiag = np.empty(n, np.float32)
    for i in range(n):
        last = indptr[i + 1] - 1
        for k in range(last - indptr[i]):
            cols[i, k] = indices[indptr[i] + k]
            avals[i, k] = data[indptr[i] + k]
            mvals[i, k] = mval[indptr[i] + k]
        adiag[i] = data[last]
        mdiag[i] = mval[last]
    return cols, avals, adiag, mvals, mdiag


@njit(cache=True, nogil=True)
def _pcg(cols, avals, adiag, mvals, mdiag, b, x, rtol, maxiter):  # pragma: no cover - numba
    """Conjugate gradients on A x = b, preconditioner (M M^T)^-1; x updated in place; -> iterations.

    A and M lower triangular with their diagonals, in `_fixed_width`'s rows (each stored entry of A acts twice, as
    A[i, j] and A[j, i]). Each iteration reads A once and M twice, and the vectors in four fused loops, without
    temporaries. The vectors have a slot n more, always zero, that the rows' padding points at."""
    n = b.shape[0]
    w = cols.shape[1]
    r = np.zeros(n + 1)
    z = np.zeros(n + 1)
    p = np.zeros(n + 1)
    q = np.zeros(n + 1)
    y = np.zeros(n + 1)
    y[:n] = x
    r[:n] = b
    nb = np.sqrt(np.sum(b * b))
    if nb == 0.0:
        nb = 1.0
    for i in range(n):  # r = b - A x
        yi = y[i]
        s = adiag[i] * yi
        for k in range(w):
            s += avals[i, k] * y[cols[i, k]]
            r[cols[i, k]] -= avals[i, k] * yi
        r[i] -= s
    r[n] = 0.0
    rr = np.sum(r * r)
    rz_old = 1.0
    it = 0
    while it < maxiter and np.sqrt(rr) > rtol * nb:
        for i in range(n):  # forward: M u = r
            s = r[i]
            for k in range(w):
                s -= mvals[i, k] * z[cols[i, k]]
            z[i] = s / mdiag[i]
        rz = 0.0
        for i in range(n - 1, -1, -1):  # backward: M^T z = u, column by column; and r.z
            zi = z[i] / mdiag[i]
            z[i] = zi
            rz += r[i] * zi
            for k in range(w):
                z[cols[i, k]] -= mvals[i, k] * zi
        z[n] = 0.0
        beta = rz / rz_old if it > 0 else 0.0
        rz_old = rz
        pq = 0.0
        for i in range(n):  # p = z + beta p, q = A p and p.q in one pass: row i reads only p[j], j <= i, made
            pi = z[i] + beta * p[i]
            p[i] = pi
            s = 0.0
            for k in range(w):
                s += avals[i, k] * p[cols[i, k]]
                q[cols[i, k]] += avals[i, k] * pi  # the transposed entry, into a row already begun
            d = adiag[i] * pi
            q[i] = d + s  # later rows add their transposed entries
            pq += pi * (d + 2.0 * s)
        if not pq > 0.0:
            break
        a = rz / pq
        rr = 0.0
        for i in range(n):
            y[i] += a * p[i]
            r[i] -= a * q[i]
            rr += r[i] * r[i]
            q[i] = 0.0
        q[n] = 0.0
        it += 1
    x[:] = y[:n]
    return it


def _jacobi(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The Jacobi preconditioner as a diagonal-only 'factor' M = sqrt(|diag|), float32 in the lower triangle's CSR
    layout (each row's diagonal last; zeros left of it)."""
    n = indptr.shape[0] - 1
    mval = np.zeros(data.size, np.float32)
    if n:
        diag = np.abs(data[indptr[1:] - 1])
        mval[indptr[1:] - 1] = np.sqrt(np.maximum(diag, 1e-12 * max(float(diag.max()), 1e-300)))
    return mval


def conjugate_gradients(
    lower: tuple[np.ndarray, np.ndarray, np.ndarray],
    rhs: np.ndarray,
    x0: np.ndarray,
    *,
    rtol: float = 1e-4,
    maxiter: int = 1000,
    preconditioner: str = "ic0",
) -> tuple[np.ndarray, int]:
    """(x, iterations) solving the SPD system A x = rhs by preconditioned CG, from x0, until the residual is at
    most ``rtol`` times rhs's norm (or ``maxiter``).

    lower: A's lower triangle with the diagonal as CSR (indptr, indices, data), each row's columns ascending and its
    diagonal last (`band_laplacian` with ``lower=True``). preconditioner "ic0": zero-fill incomplete Cholesky. Its
    factorisation can break down on a matrix that is not diagonally dominant; the diagonal is then scaled up a
    little (Manteuffel's shift), which weakens the preconditioner but not the solution; when no shift up to 10x
    gives a factor (the matrix is not positive definite), raises `np.linalg.LinAlgError`. "jacobi": the
    diagonal's magnitude (always defined).
    """
    indptr, indices, data = lower
    if preconditioner == "jacobi":
        mval = _jacobi(indptr, data)
    elif preconditioner == "ic0":
        for shift in (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
            mval, ok = _ic0(indptr, indices, data, shift)
            if ok:
                break
        else:
            raise np.linalg.LinAlgError("no incomplete Cholesky factor: the matrix is not positive definite")
    else:
        raise ValueError(f"preconditioner must be 'ic0' or 'jacobi', got {preconditioner!r}")
    x = np.array(x0, dtype=np.float64)
    b = np.asarray(rhs, dtype=np.float64)
    cols, avals, adiag, mvals, mdiag = _fixed_width(indptr, indices, data, mval)
    it = _pcg(cols, avals, adiag, mvals, mdiag, b, x, float(rtol), int(maxiter))
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


def _at(values: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """float64 values of the HxW array `values` (any real dtype) at the flat indices `flat`."""
    return np.asarray(values).ravel()[flat].astype(np.float64)


def solve_band(
    image: np.ndarray,
    trimap: np.ndarray,
    guess: np.ndarray | None = None,
    *,
    eps: float = 1e-7,
    rtol: float = 1e-4,
    maxiter: int = 1000,
    ridge: float = 1e-6,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    first_try: str = "ic0",
) -> BandSolution:
    """Alpha of a {0, 128, 255} trimap's unknown pixels by closed-form matting, never failing (module doc).

    image: HxWx3 uint8, or float in [0, 1]. `guess` (HxW in [0, 1], default 0.5) starts the iteration and is
    the target of a `ridge`-weighted data term, which keeps the system positive definite where an unknown
    pixel is in no window (images under 3 px) or an unknown region touches no known pixel; 1e-6 is far below
    the Laplacian's own weights. `data` (weight HxW >= 0, target HxW in [0, 1]) adds a per-pixel data term:
    (L + diag(ridge + weight)) a = -L_UK a_K + ridge guess + weight target on the unknown pixels (Robust
    Matting's, `p3m.infer.band_sampling`). When every solve fails, the unknown pixels take the guess (method
    "guess"). `first_try`: the fallback to start from (a `METHODS` entry from "ic0" to "jacobi, eps x100"): a
    second solve of a system like one that needed a fallback starts where that one answered, instead of failing
    again on the way (the method it reports stays relative to `eps`).
    """
    attempts = [("ic0", k) for k in EPS_STEPS] + [("jacobi", EPS_STEPS[-1])]
    names = [_method(*attempt) for attempt in attempts]
    if first_try not in names:
        raise ValueError(f"first_try must be one of {', '.join(names)}, got {first_try!r}")
    unknown = trimap == 128
    alpha = (trimap == 255).astype(np.float32)
    if not unknown.any():
        return BandSolution(alpha, "none", 0)
    img = image if image.dtype == np.uint8 else image.astype(np.float64)  # uint8 is scaled as it is read
    flat = np.flatnonzero(unknown)
    # the unknown pixels' values taken before they are made float64: the same numbers, without whole-image copies
    start = np.full(flat.size, 0.5) if guess is None else np.clip(_at(guess, flat), 0, 1)
    weight = np.full(flat.size, float(ridge))
    pull = ridge * start
    if data is not None:
        extra = _at(data[0], flat)
        weight += extra
        pull = pull + extra * _at(data[1], flat)
    for preconditioner, factor in attempts[names.index(first_try) :]:
        (indptr, indices, values), rhs, _ = band_laplacian(
            img, unknown, alpha.astype(np.float64), eps * factor, lower=True
        )
        # the data terms: on the diagonal (always stored, each row's last: each unknown pixel is its own neighbour)
        # and in the rhs
        values[indptr[1:] - 1] += weight
        try:
            x, it = conjugate_gradients(
                (indptr, indices, values),
                rhs + pull,
                start,
                rtol=rtol,
                maxiter=maxiter,
                preconditioner=preconditioner,
            )
        except np.linalg.LinAlgError:
            continue
        if np.isfinite(x).all():
            method = _method(preconditioner, factor)
            alpha.ravel()[flat] = np.clip(x, 0.0, 1.0)
            return BandSolution(alpha, method, it)
    alpha.ravel()[flat] = start
    return BandSolution(alpha, "guess", 0)


def solve_alpha(image: np.ndarray, trimap: np.ndarray, guess: np.ndarray | None = None, **options: float) -> np.ndarray:
    """HxW float32 alpha in [0, 1] from an HxWx3 image (uint8, or float in [0, 1]) and a {0, 128, 255} trimap:
    `solve_band(image, trimap, guess, **options).alpha` (options: eps, rtol, maxiter, ridge)."""
    return solve_band(image, trimap, guess, **options).alpha  # type: ignore[arg-type]


def tiny_problem() -> tuple[np.ndarray, np.ndarray]:
    """(8x8x3 uint8 image, 8x8 trimap with two unknown columns between background and foreground): the smallest
    problem that runs every kernel, for the warm-ups of this module and of `p3m.infer.band_sampling`."""
    image = np.linspace(0, 255, 8 * 8 * 3).reshape(8, 8, 3).astype(np.uint8)
    trimap = np.zeros((8, 8), np.uint8)
    trimap[:, 3:5] = 128
    trimap[:, 5:] = 255
    return image, trimap


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel by solving a tiny problem: `make setup` runs it."""
    solve_alpha(*tiny_problem())
