"""The tile path of the kernels compiled for one network (:mod:`.codegen`): a batch in tiles of ``TILE`` rows,
activations stored feature-major, (units, TILE), and the statements that load a tile, run its layers forward,
compute its output error and run it backward into its gradient."""

from .. import activations as act
from .. import losses
from ..config import LANE_BYTES, UNITS, WIDE
from .codegen_signature import Signature

LANE = "i * TILE + r"  # unit u + i, row r of a tile block at o (the finish loops of the tile path)


class TilePath(Signature):
    """A network's offsets, work blocks (with the tile path's own) and the tile path's statements."""

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

    # ---- a tile's inputs and targets, and its output stage -------------------------------------------------------

    def load_tile(self, targets):
        T = self.tile
        lines = [f"for k in range({self.sizes[0]}):",
                 "    for r in range(m):",
                 f"        buf[U(t + k * {T} + r)] = T(X[start + r, k])"]
        lines += self.zero_beyond("A0", 1, "k")  # inside the loop over k
        if targets:
            lines += [f"for j in range(1 if labels else {self.sizes[-1]}):",
                      "    for r in range(m):",
                      f"        buf[U({self.off('Y', T)} + j * {T} + r)] = T(Y[start + r, j])"]
        return lines

    def zero_beyond(self, block, count, unit="j"):
        """Lines (in a function body) for zeros in ``block``'s rows m .. the end of the last lane block, which only
        the helpers read (none where no layer calls them); ``count`` units, or the unit ``unit`` where count is 1."""
        if not any(self.helpers()):
            return []
        T, R = self.tile, self.lane()
        loop = [f"    for {unit} in range({count}):"] if count > 1 else []
        pad = "    " * (1 + bool(loop))
        return loop + [f"{pad}for r in range(m, -(-m // {R}) * {R}):  # the last lane block's other rows",
                       f"{pad}    buf[U({self.off(block, T)} + {unit} * {T} + r)] = T(0)"]

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
