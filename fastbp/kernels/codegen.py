"""The source of the kernels compiled for one network signature: sizes, activations, loss and dtype.

The generated module is ordinary Numba code that takes exactly the arguments of the generic kernels
(:mod:`fastbp.kernels.generic`), with every size and offset a literal, so LLVM unrolls the short loops, keeps a unit's
weights in registers and vectorises along the long axis:

- a batch runs in tiles of ``TILE`` rows, activations stored feature-major, (units, TILE): every multiply-add is then a
  contiguous row of the tile times a broadcast weight. Two register-blocked helpers, compiled once per module, do
  the products: ``_sums`` (a layer's sums, and the deltas below it) and ``_products`` (the gradient of a layer of
  many inputs, from a row-major copy of its input); a layer of few inputs sums ``CHUNK`` of them per pass instead
  (the tile path's statements: :mod:`.codegen_tile`);
- forward, output error, backward and the tile's gradient are fused per tile while it sits in cache; tiles are dealt
  to ``GROUPS`` groups, each with its own gradient partial, merged in a fixed order (so the result does not depend on
  the thread count, and the parallel twin runs groups on threads);
- a single row takes a row-major path instead, vectorised along each unit's inputs, ``ROW_UNITS`` units per pass.

The loops over units stay loops with constant bounds; only the short sums over a chunk of inputs are written out
(unrolling every unit in the source makes Numba's compile time and memory explode).
"""

from .. import activations as act
from .. import losses
from ..config import ROW_UNITS
from .codegen_signature import GENERATOR_VERSION, GROUPS, dedent, indent, signature, tile_rows
from .codegen_tile import TilePath

__all__ = ["GENERATOR_VERSION", "signature", "source", "tile_rows", "work_size"]


def work_size(sig, n):
    """The length of ``work`` the generated kernels need for a batch of n rows (the generated ``work_size``)."""
    m = _Network(*sig)
    if n == 1:
        return m.width
    return m.width * m.tile if n <= m.tile else GROUPS * (m.width * m.tile + m.n_params + 1)


def source(sig, name):
    """The generated module's source for ``sig`` (see :func:`signature`); ``name`` is its module name."""
    return _Network(*sig).render(name)


class _Network(TilePath):
    """The generator of one network's kernels: a tile path and a single-row path."""

    # ---- helpers for the text ----------------------------------------------------------------------------------

    @staticmethod
    def activate(name, z, a, count, pad):
        """Lines for a[i] = phi(z[i]), i < count (not softmax): one branch-free loop that vectorises; an activation
        that keeps its derivative writes phi'(z[i]) over z[i]."""
        if name == "identity" and z == a:
            return []
        if act.keeps_derivative(act.CODES[name]):
            return [f"{pad}for i in range({count}):",
                    f"{pad}    buf[U({a} + i)], buf[U({z} + i)] = act.{name}_and_derivative(buf[U({z} + i)])"]
        return [f"{pad}for i in range({count}):", f"{pad}    buf[U({a} + i)] = act.{name}(buf[U({z} + i)])"]

    @staticmethod
    def backprop(name, a, d, count, pad):
        """Lines for d[i] *= phi'(z[i]), from a = phi(z) at ``a`` (or phi'(z) itself, where the activation keeps it),
        i < count (not softmax)."""
        if name == "identity":
            return []
        factor = f"buf[U({a} + i)]" if act.keeps_derivative(act.CODES[name]) else \
            f"act.{name}_derivative(buf[U({a} + i)])"
        return [f"{pad}for i in range({count}):", f"{pad}    buf[U({d} + i)] *= {factor}"]

    # ---- the single-row path -----------------------------------------------------------------------------------
    # Each statement runs over a unit's inputs (stride 1), ROW_UNITS units per pass: the forward pass then loads each
    # input once for ROW_UNITS sums (as many chains of multiply-adds in flight, not one), and the backward pass adds
    # ROW_UNITS rows of W^T delta to the deltas below in one read-modify-write of them (config.ROW_UNITS).

    @staticmethod
    def unit_passes(count, body):
        """Lines for units 0 .. count: ``body(j, n)`` writes one pass over units j .. j + n (j a loop variable), in
        passes of ROW_UNITS and a last pass of one unit at a time for the rest."""
        whole = count - count % ROW_UNITS
        lines = [f"    for j in range(0, {whole}, {ROW_UNITS}):", *body("j", ROW_UNITS)] if whole else []
        return lines + ([f"    for j in range({whole}, {count}):", *body("j", 1)] if whole < count else [])

    def forward_row(self, norms=False):
        """The forward pass of one row; with ``norms``, each layer's sum of |parameters| into ``norm{l}`` as they
        are read (for :meth:`sgd_row`'s bound)."""
        lines = []
        for l in range(self.L):
            a, b, out, x = self.sizes[l], self.sizes[l + 1], self.off(self.sums(l), 1), self.off(f"A{l}", 1)

            def body(j, n, l=l, a=a, out=out, x=x):
                units = range(n)
                norm = [f"        norm{l} += " + " + ".join(f"abs(s{u})" for u in units)] if norms else []
                return [f"        w = {self.W[l]} + {j} * {a}",
                        *(f"        s{u} = p[U({self.B[l]} + {j} + {u})]" for u in units), *norm,
                        f"        for k in range({a}):",
                        f"            x = buf[U({x} + k)]",
                        *(f"            s{u} += p[U(w + {u * a} + k)] * x" for u in units),
                        *([f"            norm{l} += " + " + ".join(f"abs(p[U(w + {u * a} + k)])" for u in units)]
                          if norms else []),
                        *(f"        buf[U({out} + {j} + {u})] = s{u}" for u in units)]

            lines += [f"    # layer {l + 1}: {a} -> {b}", *([f"    norm{l} = T(0)"] if norms else []),
                      *self.unit_passes(b, body)]
            if self.name(l) == "softmax":
                lines.append(f"    act.softmax(buf, {out}, {self.off(f'A{l + 1}', 1)}, {b}, 1)")
            else:
                lines += self.activate(self.name(l), out, self.off(f"A{l + 1}", 1), b, "    ")
        return lines

    def backward_layer_row(self, l, per_param):
        """Lines for layer l + 1's backward pass over its weights, ROW_UNITS rows of W per pass: the deltas of layer
        l, if any, as sum_j d_j W[j] (zeroed first, times phi' last), and per parameter the lines of
        ``per_param(e, d, old, pad, bias)``, at indentation ``pad``: e its index, d its unit's delta, old its value
        (a bias's to be read, a weight's already read; the weight's input is ``x``)."""
        a, b = self.sizes[l], self.sizes[l + 1]
        d, al, dl = self.off(f"D{l + 1}", 1), self.off(f"A{l}", 1), self.off(f"D{l}", 1) if l else None

        def rows(j, n):
            units = range(n)
            lines = [f"        d{u} = buf[U({d} + {j} + {u})]" for u in units]
            first_bias = f"{self.B[l]} + {j}"
            lines += [line for u in units
                      for line in per_param(f"{first_bias} + {u}", f"d{u}", "old", " " * 8, bias=True)]
            lines += [f"        w = {self.W[l]} + {j} * {a}", f"        for k in range({a}):",
                      f"            x = buf[U({al} + k)]",
                      *(f"            o{u} = p[U(w + {u * a} + k)]" for u in units)]
            if l:
                lines.append(f"            buf[U({dl} + k)] += " + " + ".join(f"o{u} * d{u}" for u in units))
            return lines + [line for u in units
                            for line in per_param(f"w + {u * a} + k", f"d{u}", f"o{u}", " " * 12, bias=False)]

        lines = [f"    for k in range({a}):", f"        buf[U({dl} + k)] = 0"] if l else []
        lines += self.unit_passes(b, rows)
        if l:
            lines += self.backprop(self.name(l - 1), self.off(self.derivative_source(l), 1), dl, a, "    ")
        return lines

    def backward_row(self):
        def gradient(e, d, old, pad, bias):  # dW = delta a^T and db = delta
            return [f"{pad}g[U({e})] = {d}" if bias else f"{pad}g[U({e})] = {d} * x"]

        lines = []
        for l in range(self.L - 1, -1, -1):
            deltas = f", and the deltas of layer {l}" if l else ""
            lines += [f"    # layer {l + 1}: the gradient, an outer product{deltas}",
                      *self.backward_layer_row(l, gradient)]
        return lines

    def sgd_row(self):
        """One row's backward pass with plain SGD applied as it goes (``lr``, ``decay``): each layer's parameters
        are read once, for the deltas below, the gradient (written to g if ``keep``) and the new value. Nothing is
        written before a bound shows that no new value can overflow; where it does not (or is NaN), the kernel
        returns NaN and the caller takes the two-pass update, which refuses a step that is not finite."""
        L, nL = self.L, self.sizes[-1]
        # The bound: with S the sum of layer l's |parameters| (norm{l}), D a bound on its |deltas| and A the sum of
        # its |inputs| and 1 (the bias's), every value the step computes, the gradient d a, d a + decay p, and the
        # new p - lr (d a + decay p), is at most (S (1 + |decay|) + D A) max(1, |lr|) (lr may be 0, as in a warm-up's
        # first step, and still d a must not overflow). A delta of the layer below is at most 2 D S (every hidden
        # |phi'| is below 2). Sums, not maxima: a NaN carries through to the comparison and fails it.
        lines = ["    # no new parameter can overflow (the bound of codegen._Network.sgd_row), or nothing is written",
                 "    bound = T(0)",
                 f"    for j in range({nL}):",
                 f"        bound += abs(buf[U({self.units[f'D{L}']} + j)])"]
        for l in range(L - 1, -1, -1):
            lines += ["    inputs = T(1)",
                      f"    for k in range({self.sizes[l]}):",
                      f"        inputs += abs(buf[U({self.units[f'A{l}']} + k)])",
                      f"    if not (norm{l} * (T(1) + abs(decay)) + bound * inputs) * max(T(1), abs(lr)) < LIMIT:",
                      "        return T(np.nan)"]
            if l:
                lines.append(f"    bound = T(2) * bound * norm{l}")

        def update(e, d, old, pad, bias):  # the gradient (written to g if ``keep``) and the new value
            value = d if bias else "v"
            return [f"{pad}old = p[U({e})]" if bias else f"{pad}v = {d} * x",
                    f"{pad}if keep:", f"{pad}    g[U({e})] = {value}",
                    f"{pad}p[U({e})] = {old} - lr * ({value} + decay * {old})"]

        for l in range(L - 1, -1, -1):
            deltas = f", and the deltas of layer {l}" if l else ""
            lines += [f"    # layer {l + 1}: the gradient and the update{deltas}", *self.backward_layer_row(l, update)]
        return lines

    # ---- the module ----------------------------------------------------------------------------------------------
    # Bodies are pasted into the few functions that run them rather than called as ``inline="always"`` helpers:
    # Numba's IR inliner deep-copies a helper at every call site, which made compile times explode (measured: 33 s
    # for one 4-32-16-4 kernel, 836 deep copies).

    def render(self, name):
        T, L, n0, nL = self.tile, self.L, self.sizes[0], self.sizes[-1]
        loss, out_code = losses.CODES[self.loss], act.CODES[self.output]
        denominator = "n" if self.loss == "cross_entropy" else f"n * {nL}"
        a_out = self.units[f"A{L}"]
        labels_fit = " or Y.shape[1] == 1" if self.loss == "cross_entropy" else ""  # class labels, one per row
        tile_body = (self.load_tile(True) + dedent(self.forward_tile()) + ["if custom:"]
                     + indent(self.output_gradient_tile(), 4) + ["else:"] + indent(self.output_error_tile(), 4)
                     + ["if backward:"] + self.zero_beyond(f"D{L}", nL) + self.backward_tile())
        text = [
            f'"""Kernels compiled for Network({list(self.sizes)}, hidden={self.hidden!r}, output={self.output!r}, '
            f'loss={self.loss!r}), {self.dtype}.',
            "",
            f"Generated by fastbp.kernels.codegen as module {name}: edit the generator, not this file. The",
            "public kernels take the arguments of the generic ones in fastbp.kernels (``spec`` is not read: the",
            "sizes are the literals below).",
            '"""',
            "",
            "import numpy as np",
            "from numba import prange",
            "from numba import uint64 as U",
            "",
            "from fastbp import activations as act",
            "from fastbp import losses",
            "from fastbp._jit import kernel, lanes_kernel",
            "from fastbp.kernels.layout import inputs_ok",
            "from fastbp.optim import STEP, plain_sgd, sgd_coefficients, update, writes_grad",
            "",
            f"T = np.{self.dtype}",
            f"N_PARAMS = {self.n_params}",
            f"TILE = {T}  # rows per tile",
            f"LIMIT = T({'1e300' if self.dtype == 'float64' else '1e36'})  # below it, a step cannot overflow",
            f"ROW_SCALE = T(1) / T({1 if self.loss == 'cross_entropy' else nL})  # 1 / the loss's denominator on one row",
            f"GROUPS = {GROUPS}  # groups of tiles, each with its own gradient partial",
            "# One tile's blocks, each (units, TILE): " + ", ".join(f"{k} at {v * T}" for k, v in self.units.items()),
            f"TILE_SIZE = {self.width * T}",
            f"ROW_SIZE = {self.width}  # the same blocks for one row, stride 1",
            "PARTIALS = GROUPS * TILE_SIZE  # after the groups' tiles: their gradient partials, then their loss sums",
            "SUMS = PARTIALS + GROUPS * N_PARAMS",
            "",
            "",
            "@kernel",
            "def work_size(n):",
            '    """The length of ``work`` a batch of n rows needs."""',
            "    return ROW_SIZE if n == 1 else (TILE_SIZE if n <= TILE else SUMS + GROUPS)",
            "",
            "",
            "@kernel",
            "def _fits(flat, work, X, Y):",
            '    """Whether the arrays have this network\'s shapes (the sizes are literals here, so nothing else would',
            '    stop an out-of-bounds access) and ``work`` is large enough."""',
            "    n = X.shape[0]",
            f"    return (n >= 1 and X.shape[1] == {n0} and flat.shape[1] == N_PARAMS and work.size >= work_size(n)",
            f"            and Y.shape[0] == n and (Y.shape[1] == {nL}{labels_fit}))",
            "",
            "",
            *self.lanes_helpers(),
            "@kernel",
            "def _group(p, g, goff, buf, t, X, Y, lo, hi, labels, scale, backward, custom):",
            '    """Rows lo .. hi, tile by tile: their summed loss and, if ``backward``, their gradient summed into',
            '    g[goff:goff + N_PARAMS]; with ``custom``, Y holds dL/dP and the loss is not computed. Its own',
            '    function: the threaded loop stays apart from the vector code."""',
            "    total = T(0)",
            "    for start in range(lo, hi, TILE):",
            "        m = min(TILE, hi - start)",
            "        first = start == lo  # the first tile sets the group's gradient, the others add to it",
            *indent(tile_body, 8),
            "    return total",
            "",
            "",
            "@kernel",
            "def _row(p, g, buf, X, Y, labels, scale, backward, custom, fused, keep, lr, decay):",
            '    """One row, row-major (stride 1): vectorised along each unit\'s inputs. With ``fused``, a train step',
            '    with plain SGD (optim.plain_sgd: rate lr, weight decay decay) applied in the backward pass (the',
            '    gradient written to g only if ``keep``), or NaN, having written nothing, where the loss is not',
            '    finite or the step is not bounded."""',
            "    t = 0",
            f"    for k in range({n0}):",
            "        buf[U(k)] = T(X[0, k])",
            f"    for j in range(1 if labels else {nL}):",
            f"        buf[U({self.units['Y']} + j)] = T(Y[0, j])",
            *self.forward_row(norms=True),
            "    total = T(0)",
            "    if custom:",
            f"        for j in range({nL}):",
            f"            buf[U({self.units[f'D{L}']} + j)] = buf[U({self.units['Y']} + j)]",
            f"        act.backprop_row({out_code}, buf, {a_out}, {self.units[f'D{L}']}, {nL}, 1)",
            "    else:",
            f"        total = losses.output_error_call({loss}, {out_code}, buf, {self.units['Z']}, {a_out}, "
            f"{self.units[f'D{L}']}, {self.units['Y']}, {nL}, 1, labels, scale)",
            "    if fused:",
            "        if not np.isfinite(total):",
            "            return T(np.nan)",
            *indent(self.sgd_row(), 4),
            "        return total",
            "    if backward:",
            *indent(dedent(self.backward_row()), 8),
            "    return total",
            "",
            ""]
        for suffix, parallel in (("", False), ("_parallel", True)):
            loop = "prange" if parallel else "range"
            text += [
                f"@kernel(parallel={parallel})",
                f"def _run{suffix}(flat, work, X, Y, backward, custom):",
                '    """The mean loss of (X, Y) (checked); its gradient into flat[1] if ``backward``; with ``custom``,',
                '    Y is dL/dP (the gradient of any loss with respect to the outputs) and no loss is computed."""',
                "    n = X.shape[0]",
                f"    labels = Y.shape[1] != {nL}",
                f"    scale = T(1) if custom else T(1) / T({denominator})",
                "    p, g = flat[0], flat[1]",
                "    if n == 1:",
                "        no = np.bool_(False)",
                "        return _row(p, g, work, X, Y, labels, scale, backward, custom, no, no, T(0), T(0)) * scale",
                "    tiles = (n + TILE - 1) // TILE",
                "    per = (tiles + GROUPS - 1) // GROUPS * TILE  # rows per group: whole tiles, dealt evenly",
                "    groups = (n + per - 1) // per",
                "    if groups == 1:",
                "        zero = np.int64(0)  # not a literal 0: Numba would compile a specialisation for it",
                "        return _group(p, g, zero, work, zero, X, Y, zero, n, labels, scale, backward, custom) * scale",
                f"    for q in {loop}(groups):",
                "        lo, hi = q * per, min(n, (q + 1) * per)",
                "        partial, tile = PARTIALS + q * N_PARAMS, q * TILE_SIZE",
                "        total_q = _group(p, work, partial, work, tile, X, Y, lo, hi, labels, scale, backward, custom)",
                "        work[U(SUMS + q)] = total_q",
                "    total = T(0)",
                "    for q in range(groups):  # a fixed order: the same sums whatever the thread count",
                "        total += work[U(SUMS + q)]",
                "    if backward:",
                "        for e in range(N_PARAMS):",
                "            g[U(e)] = work[U(PARTIALS + e)]",
                "        for q in range(1, groups):",
                "            for e in range(N_PARAMS):",
                "                g[U(e)] += work[U(PARTIALS + q * N_PARAMS + e)]",
                "    return total * scale",
                "",
                "",
                f"@kernel(parallel={parallel})",
                f"def _predict{suffix}(flat, work, X, out):",
                "    n = X.shape[0]",
                "    p = flat[0]",
                "    if n == 1:",
                "        buf, t = work, 0",
                f"        for k in range({n0}):",
                "            buf[U(k)] = T(X[0, k])",
                *indent(dedent(self.forward_row()), 8),
                f"        for j in range({nL}):",
                f"            out[0, j] = buf[U({a_out} + j)]",
                "        return",
                "    tiles = (n + TILE - 1) // TILE",
                f"    for q in {loop}(min(tiles, GROUPS)):",
                "        buf, t = work, q * TILE_SIZE",
                "        for start in range(q * TILE, n, GROUPS * TILE):",
                "            m = min(TILE, n - start)",
                *indent(self.load_tile(False) + dedent(self.forward_tile()), 12),
                f"            for j in range({nL}):",
                "                for r in range(m):",
                f"                    out[start + r, j] = buf[U({self.off(f'A{L}', T)} + j * {T} + r)]",
                "",
                "",
                "@kernel",
                f"def loss{suffix}(flat, spec, work, X, Y):",
                '    """As fastbp.kernels.loss."""',
                f"    if not (_fits(flat, work, X, Y) and inputs_ok(X, Y, {nL})):",
                "        return np.nan",
                f"    return _run{suffix}(flat, work, X, Y, np.bool_(False), np.bool_(False))",
                "",
                "",
                "@kernel",
                f"def gradient{suffix}(flat, spec, work, X, Y):",
                '    """As fastbp.kernels.gradient."""',
                f"    if not (_fits(flat, work, X, Y) and inputs_ok(X, Y, {nL})):",
                "        return np.nan",
                f"    return _run{suffix}(flat, work, X, Y, np.bool_(True), np.bool_(False))",
                "",
                "",
                "@kernel",
                f"def train_step{suffix}(flat, spec, hyper, work, X, Y):",
                '    """As fastbp.kernels.train_step."""',
                f"    if not (_fits(flat, work, X, Y) and inputs_ok(X, Y, {nL})):",
                "        return np.nan",
                "    if X.shape[0] == 1 and plain_sgd(flat, hyper):  # one pass over the parameters instead of three",
                "        lr, decay = sgd_coefficients(flat, hyper)",
                f"        loss = _row(flat[0], flat[1], work, X, Y, Y.shape[1] != {nL}, ROW_SCALE, np.bool_(True), "
                "np.bool_(False), np.bool_(True), writes_grad(hyper), lr, decay) * ROW_SCALE",
                "        if loss == loss:",
                "            hyper[STEP] += 1",
                "            return loss",
                f"    loss = _run{suffix}(flat, work, X, Y, np.bool_(True), np.bool_(False))  # np.bool_: no literal",
                "    if not np.isfinite(loss):",
                "        return np.nan",
                "    return loss if update(flat, hyper) else np.nan",
                "",
                "",
                "@kernel",
                f"def backward{suffix}(flat, spec, work, X, grad_output):",
                '    """As fastbp.kernels.backward."""',
                f"    if not (_fits(flat, work, X, grad_output) and grad_output.shape[1] == {nL}",
                f"            and inputs_ok(X, grad_output, {nL})):",
                "        return False",
                f"    _run{suffix}(flat, work, X, grad_output, np.bool_(True), np.bool_(True))",
                "    return True",
                "",
                "",
                "@kernel",
                f"def predict{suffix}(flat, spec, work, X, out):",
                '    """As fastbp.kernels.predict."""',
                f"    if not (_fits(flat, work, X, out) and out.shape[1] == {nL} and inputs_ok(X, None, {nL})):",
                "        return False",
                f"    _predict{suffix}(flat, work, X, out)",
                "    return True",
                "",
                ""]
        return "\n".join(text).rstrip() + "\n"
