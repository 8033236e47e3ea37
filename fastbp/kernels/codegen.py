"""The source of the kernels compiled for one network signature: sizes, activations, loss and dtype.

The generated module is ordinary Numba code that takes exactly the arguments of the generic kernels
(:mod:`fastbp.kernels.generic`), with every size and offset a literal, so LLVM unrolls the short loops, keeps a unit's
weights in registers and vectorises along the long axis:

- a batch runs in tiles of ``TILE`` rows, activations stored feature-major, (units, TILE): every multiply-add is then a
  contiguous row of the tile times a broadcast weight. Two register-blocked helpers, compiled once per module, do
  the products: ``_sums`` (a layer's sums, and the deltas below it) and ``_products`` (the gradient of a layer of
  many inputs, from a row-major copy of its input); a layer of few inputs sums ``CHUNK`` of them per pass instead;
- forward, output error, backward and the tile's gradient are fused per tile while it sits in cache; tiles are dealt
  to ``GROUPS`` groups, each with its own gradient partial, merged in a fixed order (so the result does not depend on
  the thread count, and the parallel twin runs groups on threads);
- a single row takes a row-major path instead, vectorised along each unit's inputs.

The loops over units stay loops with constant bounds; only the short sums over a chunk of inputs are written out
(unrolling every unit in the source makes Numba's compile time and memory explode).
"""

from .. import activations as act
from .. import losses
from ..config import LANE_BYTES, UNITS, WIDE
from .codegen_signature import GENERATOR_VERSION, GROUPS, Signature, dedent, indent, signature, tile_rows

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


LANE = "i * TILE + r"  # unit u + i, row r of a tile block at o (the finish loops of the tile path)


class _Network(Signature):
    """The generator of one network's kernels: a tile path and a single-row path."""

    def __init__(self, *sig):
        super().__init__(*sig)
        for l in range(self.L):  # R_l: a wide A_l row by row, rows padded to whole lane blocks (for _products)
            if self.wide(self.sizes[l]):
                self.units[f"R{l}"] = self.width
                self.width += self.padded(l)
        if any(self.helpers()):  # S: the sums of a call of _sums (UNITS units) or _products
            self.units["S"] = self.width
            self.width += UNITS

    # ---- helpers for the text ----------------------------------------------------------------------------------

    def off(self, block, stride):
        """The offset expression of ``block`` in a tile at ``t`` (stride TILE) or in a single row (stride 1)."""
        return f"t + {self.units[block] * stride}"

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

    # ---- the tile path -------------------------------------------------------------------------------------------
    # Rows sit in SIMD lanes. The module's two register-blocked helpers (:meth:`lanes_helpers`) hold UNITS units (or
    # gradient rows) times LANE rows (or inputs) as scalar sums, one statement each, which LLVM's SLP vectoriser packs
    # into vectors (they are lanes_kernels): each input's row is loaded once for UNITS units, each weight once for
    # LANE rows, and the sums stay in registers over all of a layer's inputs. They take the sizes as arguments (not
    # literals, which Numba would compile a version for each), so a module compiles each once, whatever its layers
    # (written out per layer, the tile path compiled 3.6x slower).

    def lane(self):
        """Rows per lane block: LANE_BYTES of the dtype."""
        return LANE_BYTES // (4 if self.dtype == "float32" else 8)

    def padded(self, l):
        """A row's length in R_l, the row-major copy of A_l: n_l rounded up to whole lane blocks."""
        return -(-self.sizes[l] // self.lane()) * self.lane()

    def lanes_helpers(self):
        """The module's ``_sums`` and ``_products`` (their docstrings say what they compute), where a layer calls
        them: a network of narrow layers compiles neither."""
        R, n = self.lane(), range(UNITS)
        ws, cs, ds = (", ".join(f"{c}{i}" for i in n) for c in "wcd")
        sums = [f"s{i}_{r}" for i in n for r in range(R)]
        sums_helper = [
            "@lanes_kernel",
            f"def _sums(p, buf, s, x, n_in, {ws}, step, {cs}, m):",
            f'    """buf[s + i TILE + r] = c_i + sum_k p[w_i + k step] buf[x + k TILE + r] for i < {UNITS} and the',
            f'    rows r of the lane blocks that hold m: {UNITS} units (weights from w_i, one input to the next',
            '    ``step`` apart)."""',
            f"    for r0 in range(0, m, {R}):",
            *(f"        {' = '.join(sums[i * R:(i + 1) * R])} = c{i}" for i in n),
            "        for k in range(n_in):",
            "            xk = x + k * TILE + r0",
            *(f"            q{i} = p[U(w{i} + k * step)]" for i in n),
            *(f"            s{i}_{r} += q{i} * buf[U(xk + {r})]" for i in n for r in range(R)),
            *(f"        buf[U(s + r0 + {i * self.tile + r})] = s{i}_{r}" for i in n for r in range(R)),
            "",
            ""]
        products_helper = [
            "@lanes_kernel",
            f"def _products(buf, s, {ds}, rows, stride, m):",
            f'    """buf[s + i * {R} + k] = sum_r buf[d_i + r] buf[rows + r stride + k], r < m, for i < {UNITS} and',
            f'    k < {R}: a gradient\'s {UNITS} rows by {R} inputs."""',
            *(f"    {' = '.join(sums[i * R:(i + 1) * R])} = T(0)" for i in n),
            "    for r in range(m):",
            "        x = rows + r * stride",
            *(f"        e{i} = buf[U(d{i} + r)]" for i in n),
            *(f"        s{i}_{k} += e{i} * buf[U(x + {k})]" for i in n for k in range(R)),
            *(f"    buf[U(s + {i * R + k})] = s{i}_{k}" for i in n for k in range(R)),
            "",
            ""]
        uses_sums, uses_products = self.helpers()
        return sums_helper * uses_sums + products_helper * uses_products

    def helpers(self):
        """Whether some layer calls ``_sums`` (a layer's sums, or the deltas over a hidden layer's outputs) and
        ``_products`` (a layer's gradient), each over :meth:`wide` inputs."""
        inputs = self.sizes[:-1]
        return any(map(self.wide, inputs + self.sizes[2:])), any(map(self.wide, inputs))

    def wide(self, n_in):
        """Whether sums over n_in inputs are register-blocked (``WIDE`` lane blocks or more)."""
        return n_in >= WIDE * self.lane()

    def matvec_tile(self, out_units, n_in, out_block, in_block, unit, step, init, finish, setup=()):
        """out[u, r] = finish(init(u) + sum_k p[unit(u) + k step] in[k, r]) for every unit u and row of the tile.

        Over :meth:`wide` inputs, UNITS units and LANE rows per call of ``_sums`` (the rows from m up to a whole lane
        block are computed too, from zeroed inputs or stale values, lane by lane: no result reads them; the last
        call's units beyond ``out_units`` repeat the last unit, their sums unused); over fewer, CHUNK inputs per pass
        over the rows, their weights in registers. ``finish(lane)(value)`` gives a unit's statements for its row at
        ``o + lane`` (:meth:`forward_finish`, :meth:`delta_finish`); ``setup``, lines at the start of a unit (or of a
        call, in u)."""
        if not self.wide(n_in):
            return self.matvec_chunks(out_units, n_in, out_block, in_block, unit, step, init, finish("r"), setup)
        T, R, S, n, last = self.tile, self.lane(), self.off("S", self.tile), range(UNITS), out_units - 1
        return [f"    mp = -(-m // {R}) * {R}  # m up to whole lane blocks",
                f"    for u in range(0, {out_units}, {UNITS}):",
                f"        _sums(p, buf, {S}, {self.off(in_block, T)}, np.int64({n_in}), "
                + ", ".join(unit(f"min(u + {i}, {last})") for i in n) + f", np.int64({step}), "
                + ", ".join(init(f"min(u + {i}, {last})") for i in n) + ", m)",
                f"        o = {self.off(out_block, T)} + u * {T}",
                *(f"        {line}" for line in setup),
                f"        for i in range(min({UNITS}, {out_units} - u)):",
                "            for r in range(mp):",
                *(f"                {line}" for line in finish(LANE)(f"buf[U({S} + i * {T} + r)]"))]

    def matvec_chunks(self, out_units, n_in, out_block, in_block, unit, step, init, finish, setup):
        T = self.tile

        def emit(start, count, first, last, indent):
            pad = " " * indent
            loads = ", ".join(f"p[U(w + {step * i})]" if i else "p[U(w)]" for i in range(count))
            terms = " + ".join(f"w{i} * buf[U(x + {i * T} + r)]" if i else "w0 * buf[U(x + r)]" for i in range(count))
            value = f"{init('u')} + {terms}" if first else f"buf[U(o + r)] + {terms}"
            body = finish(value) if last else [f"buf[U(o + r)] = {value}"]
            return ([f"{pad}w = {unit('u')} + {start} * {step}",
                     f"{pad}{', '.join(f'w{i}' for i in range(count))} = {loads}",
                     f"{pad}x = {self.off(in_block, T)} + {start} * {T}",
                     f"{pad}for r in range(m):"]
                    + [f"{pad}    {line}" for line in body])

        return ([f"    for u in range({out_units}):", f"        o = {self.off(out_block, T)} + u * {T}",
                 *(f"        {line}" for line in setup)] + self.chunks(n_in, emit))

    def forward_tile(self):
        T, lines = self.tile, []
        for l in range(self.L):
            a, b = self.sizes[l], self.sizes[l + 1]
            lines.append(f"    # layer {l + 1}: {a} -> {b}, z = W a + b, a = phi(z)")
            lines += self.matvec_tile(b, a, self.sums(l), f"A{l}", lambda u, l=l, a=a: f"{self.W[l]} + {u} * {a}", 1,
                                      lambda u, l=l: f"p[U({self.B[l]} + {u})]",
                                      lambda lane, l=l: self.forward_finish(l, T, lane))
            if self.name(l) == "softmax":
                lines += ["    for r in range(m):",
                          f"        act.softmax(buf, {self.off('Z', T)} + r, {self.off(f'A{self.L}', T)} + r, "
                          f"{b}, {T})"]
        return lines

    def gradient_tile(self, l):
        """Layer l's gradient into g[goff:] (set when ``first``, else added): dW = delta a^T and db = delta summed
        over the rows. Of :meth:`wide` inputs, UNITS rows of dW by LANE inputs per call of ``_products``, from R_l
        (which the lines first fill: A_l row by row, each row padded with zeros); of fewer, where that copy would
        cost more than it saves, CHUNK inputs per pass over the rows, each sum reduced across its SIMD lanes."""
        if not self.wide(self.sizes[l]):
            return self.gradient_chunks(l)
        T, R, S, a, b = self.tile, self.lane(), self.off("S", self.tile), self.sizes[l], self.sizes[l + 1]
        rows, stride, d = self.off(f"R{l}", T), self.padded(l), self.off(f"D{l + 1}", T)
        source = "T(X[start + r, k])" if l == 0 else f"buf[U({self.off(f'A{l}', T)} + k * {T} + r)]"
        return [f"    for r in range(m):",
                f"        x = {rows} + r * {stride}",
                f"        for k in range({a}):",
                f"            buf[U(x + k)] = {source}",
                *([f"        for k in range({a}, {stride}):", "            buf[U(x + k)] = T(0)"] * (stride > a)),
                f"    for j in range(0, {b}, {UNITS}):",
                f"        for k0 in range(0, {a}, {R}):",
                f"            _products(buf, {S}, "
                + ", ".join(f"{d} + min(j + {i}, {b - 1}) * {T}" for i in range(UNITS))
                + f", {rows} + k0, np.int64({stride}), m)",
                f"            for i in range(min({UNITS}, {b} - j)):",
                f"                e = goff + {self.W[l]} + (j + i) * {a} + k0",
                f"                for k in range(min({R}, {a} - k0)):",
                f"                    g[U(e + k)] = buf[U({S} + i * {R} + k)] if first else "
                f"g[U(e + k)] + buf[U({S} + i * {R} + k)]",
                *self.bias_gradient(l)]

    def gradient_chunks(self, l):
        """Layer l's gradient for a few inputs: per unit j, after its bias's sum, CHUNK inputs per pass over the rows
        (the passes continue :meth:`bias_gradient`'s loop over j)."""
        T, a = self.tile, self.sizes[l]

        def emit(start, count, first, last, indent):
            pad = " " * indent
            acc = ", ".join(f"s{i}" for i in range(count))
            return ([f"{pad}{acc} = {', '.join(['T(0)'] * count)}",
                     f"{pad}x = {self.off(f'A{l}', T)} + {start} * {T}",
                     f"{pad}for r in range(m):",
                     f"{pad}    dr = buf[U(d + r)]"]
                    + [f"{pad}    s{i} += dr * buf[U(x + {i * T} + r)]" for i in range(count)]
                    + [f"{pad}e = goff + {self.W[l]} + j * {a} + {start}"]
                    + [f"{pad}g[U(e + {i})] = s{i} if first else g[U(e + {i})] + s{i}" for i in range(count)])

        return self.bias_gradient(l) + self.chunks(a, emit)

    def bias_gradient(self, l):
        """Lines for layer l's bias gradient, each unit j's delta summed over the rows (its row at ``d``)."""
        T = self.tile
        return [f"    for j in range({self.sizes[l + 1]}):",
                f"        d = {self.off(f'D{l + 1}', T)} + j * {T}",
                "        s = T(0)",
                "        for r in range(m):",
                "            s += buf[U(d + r)]",
                f"        e = goff + {self.B[l]} + j",
                "        g[U(e)] = s if first else g[U(e)] + s"]

    def backward_tile(self):
        """The gradient of every layer into g[goff:] (set when ``first``, else added) and the deltas."""
        T, lines = self.tile, []
        for l in range(self.L - 1, -1, -1):
            a, b = self.sizes[l], self.sizes[l + 1]
            lines.append(f"    # layer {l + 1}: the gradient, dW = delta a^T and db = delta summed over the rows")
            lines += self.gradient_tile(l)
            if l == 0:
                continue
            lines.append(f"    # layer {l + 1}: the deltas of layer {l}, delta = (W^T delta') * phi'(a)")
            lines += self.matvec_tile(a, b, f"D{l}", f"D{l + 1}", lambda u, l=l: f"{self.W[l]} + {u}", a,
                                      lambda u: "T(0)", lambda lane, l=l: self.delta_finish(l, lane, "a"),
                                      setup=[f"a = {self.off(self.derivative_source(l), T)} + u * {T}"])
        return lines

    # ---- the single-row path -----------------------------------------------------------------------------------

    def forward_row(self, norms=False):
        """The forward pass of one row; with ``norms``, each layer's sum of |parameters| into ``norm{l}`` as they
        are read (for :meth:`sgd_row`'s bound)."""
        lines = []
        for l in range(self.L):
            a, b = self.sizes[l], self.sizes[l + 1]
            out = self.sums(l)
            sums = [f"    norm{l} = T(0)", f"        norm{l} += abs(s)", f"            norm{l} += abs(p[U(w + k)])"] \
                if norms else ["", "", ""]
            lines += [line for line in [
                      f"    # layer {l + 1}: {a} -> {b}",
                      sums[0],
                      f"    for j in range({b}):",
                      f"        w = {self.W[l]} + j * {a}",
                      f"        s = p[U({self.B[l]} + j)]",
                      sums[1],
                      f"        for k in range({a}):",
                      f"            s += p[U(w + k)] * buf[U({self.off(f'A{l}', 1)} + k)]",
                      sums[2],
                      f"        buf[U({self.off(out, 1)} + j)] = s"] if line]
            if self.name(l) == "softmax":
                lines.append(f"    act.softmax(buf, {self.off(out, 1)}, {self.off(f'A{l + 1}', 1)}, {b}, 1)")
            else:
                lines += self.activate(self.name(l), self.off(out, 1), self.off(f"A{l + 1}", 1), b, "    ")
        return lines

    def backward_row(self):
        lines = []
        for l in range(self.L - 1, -1, -1):
            a, b = self.sizes[l], self.sizes[l + 1]
            d, al = self.off(f"D{l + 1}", 1), self.off(f"A{l}", 1)
            lines += [f"    # layer {l + 1}: the gradient, an outer product",
                      f"    for j in range({b}):",
                      f"        d = buf[U({d} + j)]",
                      f"        g[U({self.B[l]} + j)] = d",
                      f"        w = {self.W[l]} + j * {a}",
                      f"        for k in range({a}):",
                      f"            g[U(w + k)] = d * buf[U({al} + k)]"]
            if l == 0:
                continue
            dl = self.off(f"D{l}", 1)
            lines += [f"    # layer {l + 1}: the deltas of layer {l}",
                      f"    for k in range({a}):",
                      f"        buf[U({dl} + k)] = 0",
                      f"    for j in range({b}):",
                      f"        d = buf[U({d} + j)]",
                      f"        w = {self.W[l]} + j * {a}",
                      f"        for k in range({a}):",
                      f"            buf[U({dl} + k)] += p[U(w + k)] * d"]
            lines += self.backprop(self.name(l - 1), self.off(self.derivative_source(l), 1), dl, a, "    ")
        return lines

    def sgd_row(self):
        """One row's backward pass with plain SGD applied as it goes (``lr``, ``decay``): each layer's parameters
        are read once, for the deltas below, the gradient (still written to g) and the new value. Nothing is written
        before a bound shows that no new value can overflow; where it does not (or is NaN), the kernel returns NaN
        and the caller takes the two-pass update, which refuses a step that is not finite."""
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
        for l in range(L - 1, -1, -1):
            a, b = self.sizes[l], self.sizes[l + 1]
            d, al, dl = self.units[f"D{l + 1}"], self.units[f"A{l}"], self.units.get(f"D{l}")
            deltas = f", and the deltas of layer {l}" if l else ""
            lines.append(f"    # layer {l + 1}: the gradient and the update{deltas}")
            if l:
                lines += [f"    for k in range({a}):", f"        buf[U({dl} + k)] = 0"]
            lines += [f"    for j in range({b}):",
                      f"        d = buf[U({d} + j)]",
                      f"        e = {self.B[l]} + j",
                      "        old = p[U(e)]",
                      "        g[U(e)] = d",
                      "        p[U(e)] = old - lr * (d + decay * old)",
                      f"        w = {self.W[l]} + j * {a}",
                      f"        for k in range({a}):",
                      "            old = p[U(w + k)]"]
            if l:
                lines.append(f"            buf[U({dl} + k)] += old * d")
            lines += [f"            v = d * buf[U({al} + k)]",
                      "            g[U(w + k)] = v",
                      "            p[U(w + k)] = old - lr * (v + decay * old)"]
            if l:
                lines += self.backprop(self.name(l - 1), self.units[self.derivative_source(l)], dl, a, "    ")
        return lines

    # ---- the module ----------------------------------------------------------------------------------------------
    # Bodies are pasted into the few functions that run them rather than called as ``inline="always"`` helpers:
    # Numba's IR inliner deep-copies a helper at every call site, which made compile times explode (measured: 33 s
    # for one 4-32-16-4 kernel, 836 deep copies).

    def load_tile(self, targets):
        T = self.tile
        lines = [f"for k in range({self.sizes[0]}):",
                 "    for r in range(m):",
                 f"        buf[U(t + k * {T} + r)] = T(X[start + r, k])",
                 f"    for r in range(m, -(-m // {self.lane()}) * {self.lane()}):  # the last lane block's other rows",
                 f"        buf[U(t + k * {T} + r)] = T(0)"]
        if targets:
            lines += [f"for j in range(1 if labels else {self.sizes[-1]}):",
                      "    for r in range(m):",
                      f"        buf[U({self.off('Y', T)} + j * {T} + r)] = T(Y[start + r, j])"]
        return lines

    def zero_beyond(self, block, count):
        """Lines (in a function body) for zeros in ``block``'s rows m .. the end of the last lane block."""
        T = self.tile
        return [f"    for j in range({count}):",
                f"        for r in range(m, -(-m // {self.lane()}) * {self.lane()}):",
                f"            buf[U({self.off(block, T)} + j * {T} + r)] = T(0)"]

    def output_error_tile(self):
        T, L, nL = self.tile, self.L, self.sizes[-1]
        loss, out_code = losses.CODES[self.loss], act.CODES[self.output]
        if self.loss in ("mse", "huber") and self.output != "softmax":  # unit by unit, rows in SIMD lanes
            return [f"for j in range({nL}):",
                    f"    a = {self.off(f'A{L}', T)} + j * {T}",
                    f"    y = {self.off('Y', T)} + j * {T}",
                    f"    d = {self.off(f'D{L}', T)} + j * {T}",
                    "    for r in range(m):",
                    f"        value, grad = losses.unit_error({loss}, buf[U(a + r)] - buf[U(y + r)])",
                    "        total += value",
                    "        buf[U(d + r)] = scale * grad" + (
                        "" if self.output == "identity" else f" * act.{self.output}_derivative(buf[U(a + r)])")]
        return ["for r in range(m):",
                f"    total += losses.output_error_call({loss}, {out_code}, buf, {self.off('Z', T)} + r, "
                f"{self.off(f'A{L}', T)} + r, {self.off(f'D{L}', T)} + r, {self.off('Y', T)} + r, {nL}, {T}, labels, "
                "scale)"]

    def output_gradient_tile(self):
        """delta_L from dL/dP loaded into the Y block (``backward``): through the output activation's Jacobian."""
        T, L, nL = self.tile, self.L, self.sizes[-1]
        y, a, d = (self.off(block, T) for block in ("Y", f"A{L}", f"D{L}"))
        derivative = "" if self.output in ("identity", "softmax") else \
            f" * act.{self.output}_derivative(buf[U({a} + j * {T} + r)])"
        lines = [f"for j in range({nL}):",
                 "    for r in range(m):",
                 f"        buf[U({d} + j * {T} + r)] = buf[U({y} + j * {T} + r)]{derivative}"]
        if self.output == "softmax":
            lines += ["for r in range(m):", f"    act.backprop_row({act.SOFTMAX}, buf, {a} + r, {d} + r, {nL}, {T})"]
        return lines

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
            "from fastbp.optim import STEP, plain_sgd, sgd_coefficients, update",
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
            "def _row(p, g, buf, X, Y, labels, scale, backward, custom, fused, lr, decay):",
            '    """One row, row-major (stride 1): vectorised along each unit\'s inputs. With ``fused``, a train step',
            '    with plain SGD (optim.plain_sgd: rate lr, weight decay decay) applied in the backward pass, or NaN,',
            '    having written nothing, where the loss is not finite or the step is not bounded."""',
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
                "        return _row(p, g, work, X, Y, labels, scale, backward, custom, no, T(0), T(0)) * scale",
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
                "np.bool_(False), np.bool_(True), lr, decay) * ROW_SCALE",
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
