"""The generic kernels' backward loops over one dense layer, for the layers BLAS does not take: the weight
gradient, delta^T A, and the deltas below, delta W.

Both add rows scaled by scalars into a row kept in memory (unit j's gradient row += delta[i, j] A[i, :]; row i's
delta below += delta[i, j] W[j, :]), so the plain loop loads and stores that row for each multiply-add and is bound
by its stores. These add four rows per pass, so one load and one store of the row serve four multiply-adds
(each loop called alone on a 64 x 64 layer and 32 rows, a shape the kernels give BLAS: 1.7-1.9x; in the kernels,
a whole train step below the BLAS threshold: 1.22x on 8-16-16-2 x 16 rows, 1.42x on 4-8-8-1 x 64, unchanged on 7
rows, one row and xor); the rows left over (fewer than four) take the plain loop. The forward pass's dot products keep their loop in
:mod:`.generic`: four rows per load of W gained 1.3x there, not worth its share of the compile time.
"""

from numba import uint64 as U  # an unsigned index skips Numba's negative-index wraparound: the loops vectorise

from .._jit import helper

BLOCK = 4  # rows (or units) per pass: four sums in flight, each in its own SIMD register
UNITS = 16  # gradient rows per call of gradient_rows on a small batch


@helper
def gradient_rows(g, w_off, b_off, work, d_off, a_off, n, n_in, n_out, lo, hi, weights):
    """Units lo..hi's rows of the gradient: the bias's, the sum over the batch's n rows of delta[i, j] (delta (n,
    n_out) at d_off), and when ``weights`` (BLAS has not done it) W's, the sum of delta[i, j] A[i, :] (A (n, n_in)
    at a_off), four rows of the batch per pass over it after the first row (which assigns: a pass to zero the row
    would cost as much as a row's products) and the rows left over. Called per block of units on a small batch:
    called per unit, a one-row 8-64-64-2 gradient took 0.3-0.4 us longer (3.6-3.8 us against 3.0-3.3 inlined)."""
    rest = 1 + (n - 1) % BLOCK  # row 0, and the rows left over after the blocks of four
    for j in range(lo, hi):
        s = work[U(d_off + j)]
        for i in range(1, n):
            s += work[U(d_off + i * n_out + j)]
        g[U(b_off + j)] = s
        if not weights:
            continue
        dw, d = w_off + j * n_in, work[U(d_off + j)]
        for k in range(n_in):
            g[U(dw + k)] = d * work[U(a_off + k)]
        for i in range(1, rest):
            d, a = work[U(d_off + i * n_out + j)], a_off + i * n_in
            for k in range(n_in):
                g[U(dw + k)] += d * work[U(a + k)]
        for i in range(rest, n, BLOCK):
            d = d_off + i * n_out + j
            d0, d1, d2, d3 = work[U(d)], work[U(d + n_out)], work[U(d + 2 * n_out)], work[U(d + 3 * n_out)]
            a0, a1, a2, a3 = a_off + i * n_in, a_off + (i + 1) * n_in, a_off + (i + 2) * n_in, a_off + (i + 3) * n_in
            for k in range(n_in):
                g[U(dw + k)] += d0 * work[U(a0 + k)] + d1 * work[U(a1 + k)] + d2 * work[U(a2 + k)] + \
                    d3 * work[U(a3 + k)]


@helper
def delta_rows(p, w_off, work, d_off, dp_off, lo, hi, n_in, n_out):
    """The rows lo..hi of delta W into work at dp_off (delta (n, n_out) at d_off, W (n_out, n_in) at p[w_off]),
    four units' rows of W per pass over a row of the result."""
    end = n_out - n_out % BLOCK
    for i in range(lo, hi):
        dp, d = dp_off + i * n_in, d_off + i * n_out
        for k in range(n_in):
            work[U(dp + k)] = 0
        for j in range(0, end, BLOCK):
            d0, d1, d2, d3 = work[U(d + j)], work[U(d + j + 1)], work[U(d + j + 2)], work[U(d + j + 3)]
            w0, w1, w2, w3 = w_off + j * n_in, w_off + (j + 1) * n_in, w_off + (j + 2) * n_in, w_off + (j + 3) * n_in
            for k in range(n_in):
                work[U(dp + k)] += d0 * p[U(w0 + k)] + d1 * p[U(w1 + k)] + d2 * p[U(w2 + k)] + d3 * p[U(w3 + k)]
        for j in range(end, n_out):
            dj, w = work[U(d + j)], w_off + j * n_in
            for k in range(n_in):
                work[U(dp + k)] += dj * p[U(w + k)]
