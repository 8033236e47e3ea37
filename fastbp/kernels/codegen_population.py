"""The source of the population kernels compiled for one network signature: N members of one architecture trained
and queried in one call, each statement a SIMD row over a block of members (the generic twin, with the layout of
``flats``, ``hypers`` and ``X``, is :mod:`fastbp.kernels.population`).

Members go in blocks of ``LANES`` (512 bytes of one value: 128 float32 or 64 float64 members). A block first copies
its members' parameters into a scratch slot, parameter e of lane i at ``e * LANES + i``, so every statement after it
is a loop over the lanes on one array at literal offsets, which LLVM proves independent and vectorises (read from
``flats`` itself, whose rows lie N apart, it cannot; and rows of 256 bytes or less copy at a third of the speed of
512, measured here). The block then runs forward, output error and backward row by row in the slot, its gradient
summed in the slot, and finally writes ``flats`` in one pass: the gradient and the new parameters, with a second
pass (only when needed) for the optimizer state and to put back a member whose new values are not all finite.
Blocks are dealt to at most ``GROUPS`` groups, one slot each; the parallel twin runs the groups on threads.
"""

from .. import activations as act
from .. import losses
from ..optim import ADAM_KIND, SGD_KIND
from .codegen_signature import GROUPS, Signature, dedent, indent

UPDATES = (("sgd", SGD_KIND, 0), ("momentum", SGD_KIND, 1), ("adam", ADAM_KIND, 2))  # (name, kind, state slots)


def source(sig, name):
    """The generated module's source for ``sig`` (:func:`fastbp.kernels.codegen_signature.signature`) named ``name``."""
    return _Population(*sig).render(name)


def work_rows(sig, n, N):
    """The rows of ``works`` (rows, N) the generated kernels need: as the generated ``work_size(n, N)``."""
    m = _Population(*sig)
    blocks = (N + m.lanes - 1) // m.lanes
    return (min(GROUPS, blocks) * m.slot + N - 1) // N


class _Population(Signature):
    def __init__(self, *sig):
        super().__init__(*sig)
        self.lanes = L = self.tile  # members per block: as many as a tile's rows, 512 bytes of one value
        # A slot: the parameters, their gradient, 7 rows of update coefficients, a status row, a loss row, then
        # one row's activations and deltas (the Signature's units, each a row of LANES).
        self.G = self.n_params * L
        self.C = 2 * self.n_params * L
        self.STATUS, self.LOSS, self.ACTS = self.C + 7 * L, self.C + 8 * L, self.C + 9 * L
        self.slot = self.ACTS + self.width * L

    def at(self, block, unit=0):
        """The offset expression of ``block``'s unit (a literal or a variable name) in the slot's row."""
        return f"a + ({self.units[block]} + {unit}) * {self.lanes}" if isinstance(unit, str) else \
            f"a + {(self.units[block] + unit) * self.lanes}"

    def forward_layers(self, matvec, bias, stride, lane, count, at):
        """Every layer's z = W a + b, a = phi(z): ``matvec`` writes the sums (the generator's own loop),
        ``bias(l)`` starts unit u's sum, units lie ``stride`` apart, ``lane`` runs over ``count``, ``at(block)`` is
        a block's offset."""
        lines = []
        for l in range(self.L):
            a, b = self.sizes[l], self.sizes[l + 1]
            lines.append(f"    # layer {l + 1}: {a} -> {b}, z = W a + b, a = phi(z)")
            lines += matvec(b, a, self.sums(l), f"A{l}", lambda k, l=l, a=a: f"{self.W[l]} + u * {a} + {k}", 1, bias(l),
                            self.forward_finish(l, stride, lane))
            if self.name(l) == "softmax":
                z, p = f"{at('Z')} + {lane}", f"{at(f'A{self.L}')} + {lane}"
                lines += [f"    for {lane} in range({count}):", f"        act.softmax(buf, {z}, {p}, {b}, {stride})"]
        return lines

    def matvec(self, out_units, n_in, out_block, in_block, base, step, init, finish, setup=()):
        """out[u] = finish(init + sum_k p[base(k) + step k] in[k]) for every lane, CHUNK inputs per pass; ``base``
        gives the parameter index of input ``start`` for unit u (parameters are per lane, so loads, not registers)."""
        L = self.lanes

        def emit(start, count, first, last, indent):
            pad = " " * indent
            terms = " + ".join(f"buf[U(w + {step * k * L} + i)] * buf[U(x + {k * L} + i)]" for k in range(count))
            value = f"{init}{terms}" if first else f"buf[U(o + i)] + {terms}"
            body = finish(value) if last else [f"buf[U(o + i)] = {value}"]
            return ([f"{pad}w = s + ({base(start)}) * {L}",
                     f"{pad}x = {self.at(in_block)} + ({start}) * {L}",
                     f"{pad}for i in range(cnt):"]
                    + [f"{pad}    {line}" for line in body])

        return ([f"    for u in range({out_units}):", f"        o = {self.at(out_block, 'u')}",
                 *(f"        {line}" for line in setup)] + self.chunks(n_in, emit))

    def forward(self):
        L = self.lanes
        return self.forward_layers(self.matvec, lambda l: f"buf[U(s + ({self.B[l]} + u) * {L} + i)] + ", L, "i",
                                   "cnt", self.at)

    def output_error(self):
        """Lines adding each lane's loss on this row to the loss row and writing delta_L."""
        L, nL, out = self.lanes, self.sizes[-1], self.output
        loss, out_code = losses.CODES[self.loss], act.CODES[out]
        if self.loss in ("mse", "huber") and out != "softmax":  # unit by unit, lanes in SIMD
            derivative = "" if out == "identity" else f" * act.{out}_derivative(buf[U(p + i)])"
            return [f"for j in range({nL}):",
                    f"    p, y, d = {self.at(f'A{self.L}', 'j')}, {self.at('Y', 'j')}, {self.at(f'D{self.L}', 'j')}",
                    "    for i in range(cnt):",
                    f"        value, grad = losses.unit_error({loss}, buf[U(p + i)] - buf[U(y + i)])",
                    f"        buf[U(s + {self.LOSS} + i)] += value",
                    f"        buf[U(d + i)] = scale * grad{derivative}"]
        return ["for i in range(cnt):",
                f"    buf[U(s + {self.LOSS} + i)] += losses.output_error_call({loss}, {out_code}, buf, "
                f"{self.at('Z')} + i, {self.at(f'A{self.L}')} + i, {self.at(f'D{self.L}')} + i, {self.at('Y')} + i, "
                f"{nL}, {L}, labels, scale)"]

    def backward(self):
        """The gradient of every layer into the slot's gradient rows (set on the first row, else added) and the
        deltas."""
        L, lines = self.lanes, []
        for l in range(self.L - 1, -1, -1):
            a, b = self.sizes[l], self.sizes[l + 1]
            lines += [f"    # layer {l + 1}: the gradient, dW = delta a^T and db = delta",
                      f"    for j in range({b}):",
                      f"        d = {self.at(f'D{l + 1}', 'j')}",
                      f"        e = s + {self.G} + ({self.B[l]} + j) * {L}",
                      "        for i in range(cnt):",
                      "            buf[U(e + i)] = buf[U(d + i)] if first else buf[U(e + i)] + buf[U(d + i)]",
                      f"        e = s + {self.G} + ({self.W[l]} + j * {a}) * {L}",
                      f"        for k in range({a}):",
                      f"            x = {self.at(f'A{l}', 'k')}",
                      "            for i in range(cnt):",
                      "                v = buf[U(d + i)] * buf[U(x + i)]",
                      f"                buf[U(e + k * {L} + i)] = v if first else buf[U(e + k * {L} + i)] + v"]
            if l == 0:
                continue
            lines.append(f"    # layer {l + 1}: the deltas of layer {l}, delta = (W^T delta') * phi'(a)")
            lines += self.matvec(a, b, f"D{l}", f"D{l + 1}", lambda k, l=l, a=a: f"{self.W[l]} + u + ({k}) * {a}",
                                 a, "", self.delta_finish(l, "i", "h"),
                                 setup=[f"h = {self.at(self.derivative_source(l), 'u')}"])
        return lines

    def load_row(self, targets):
        lines = ["for i in range(cnt):",
                 f"    for k in range({self.sizes[0]}):",
                 f"        buf[U({self.at('A0', 'k')} + i)] = T(X[U(lo + i), row, k])"]
        if targets:
            lines += [f"    for j in range(1 if labels else {self.sizes[-1]}):",
                      f"        buf[U({self.at('Y', 'j')} + i)] = T(Y[U(lo + i), row, j])"]
        return lines

    def load_params(self):
        return [f"for e in range({self.n_params}):  # the block's parameters into the slot",
                "    for i in range(cnt):",
                f"        buf[U(s + e * {self.lanes} + i)] = flats[0, e, U(lo + i)]"]

    def apply(self, name, kind, slots):
        """The update of one block for one optimizer (kind and state slots as literals, so its loops vectorise)."""
        L, s1, s2 = self.lanes, min(2, 1 + slots), 1 + slots
        coeffs = ", ".join(f"buf[U(c + {r * L} + i)]" for r in range(7))
        state = [f"v1 = flats[{s1}, e, m]", f"v2 = flats[{s2}, e, m]"][:slots]
        new_state = ["new1", "new2"][:slots] + ["v1", "v2"][slots:]
        compute = [f"new, {', '.join(new_state)} = optim.new_values({kind}, {slots}, ({coeffs}), p, g, "
                   f"{'v1' if slots > 0 else 'g'}, {'v2' if slots > 1 else 'g'})"]
        finite = " + ".join(["new", *["new1", "new2"][:slots]])
        return [
            "@kernel",
            f"def _apply_{name}(flats, buf, s, lo, cnt):",
            '    """Pass 1: the gradient and the new parameters into ``flats``, and a NaN status for the lanes whose',
            '    new values are not all finite. Pass 2, for the optimizer state or a failed lane: the state, and the',
            '    old parameters put back for the failed lanes (all or nothing per member)."""',
            f"    c, st = s + {self.C}, s + {self.STATUS}",
            f"    for e in range({self.n_params}):",
            f"        pe, ge = s + e * {L}, s + {self.G} + e * {L}",
            "        for i in range(cnt):",
            "            m = U(lo + i)",
            "            p, g = buf[U(pe + i)], buf[U(ge + i)]",
            *(f"            {line}" for line in state + compute),
            "            flats[1, e, m] = g",
            "            flats[0, e, m] = new",
            f"            buf[U(st + i)] += ({finite}) * T(0)",
            *([] if slots else [
                "    failed = T(0)",
                "    for i in range(cnt):",
                "        failed += buf[U(st + i)]",
                "    if failed == 0:",
                "        return"]),
            f"    for e in range({self.n_params}):",
            f"        pe, ge = s + e * {L}, s + {self.G} + e * {L}",
            "        for i in range(cnt):",
            "            m = U(lo + i)",
            "            ok = buf[U(st + i)] == 0",
            "            p, g = buf[U(pe + i)], buf[U(ge + i)]",
            *(f"            {line}" for line in state + compute),
            "            flats[0, e, m] = new if ok else p",
            *(f"            flats[{s1 + r}, e, m] = new{r + 1} if ok else v{r + 1}" for r in range(slots)),
            "",
            ""]

    def render(self, name):
        L, nL, n0 = self.lanes, self.sizes[-1], self.sizes[0]
        denominator = "n" if self.loss == "cross_entropy" else f"n * {nL}"
        labels_fit = " or Y.shape[2] == 1" if self.loss == "cross_entropy" else ""
        a_out = self.at(f"A{self.L}", "j")
        text = [
            f'"""Population kernels compiled for Network({list(self.sizes)}, hidden={self.hidden!r}, '
            f'output={self.output!r}, loss={self.loss!r}), {self.dtype}.',
            "",
            f"Generated by fastbp.kernels.codegen_population as module {name}: edit the generator, not this file.",
            "The public kernels take the arguments of fastbp.kernels.population_train_step and population_predict",
            "(``spec`` is not read: the sizes are the literals below).",
            '"""',
            "",
            "import numpy as np",
            "from numba import prange",
            "from numba import uint64 as U",
            "",
            "from fastbp import activations as act",
            "from fastbp import losses, optim",
            "from fastbp._jit import kernel",
            "from fastbp.kernels.population import same_hypers",
            "",
            f"T = np.{self.dtype}",
            f"N_PARAMS = {self.n_params}",
            f"LANES = {L}  # members per block",
            f"GROUPS = {GROUPS}  # groups of blocks, each with its own scratch slot",
            f"# A slot: parameters at 0, gradient at {self.G}, update coefficients at {self.C}, status at "
            f"{self.STATUS}, losses at {self.LOSS},",
            "# then one row's units, each a row of LANES: "
            + ", ".join(f"{k} at {self.ACTS + v * L}" for k, v in self.units.items()),
            f"SLOT = {self.slot}",
            "",
            "",
            "@kernel",
            "def work_size(n, N):",
            '    """The rows of ``works`` (rows, N) a step of N members on batches of n rows needs."""',
            "    return (min(GROUPS, (N + LANES - 1) // LANES) * SLOT + N - 1) // N",
            "",
            "",
            "@kernel",
            "def _fits(flats, works, X, Y, out):",
            '    """Whether the arrays have this population\'s shapes (the sizes are literals here, so nothing else',
            '    would stop an out-of-bounds access) and ``works`` is large enough."""',
            "    N, n = X.shape[0], X.shape[1]",
            f"    return (N >= 1 and n >= 1 and X.shape[2] == {n0} and flats.shape[1] == N_PARAMS",
            "            and flats.shape[2] == N and works.size >= work_size(n, N) * N and out.shape[0] == N",
            f"            and Y.shape[0] == N and Y.shape[1] == n and (Y.shape[2] == {nL}{labels_fit}))",
            "",
            "",
            "@kernel",
            "def _inputs_ok(X, Y):",
            '    """Whether X and Y (unless None) are finite and any class labels in range. Members run innermost: the',
            '    long loop, which vectorises (over the short rows of one member the checks cost 3x more)."""',
            "    probe = 0.0  # x * 0 is NaN for a NaN or an infinity (no nnan/ninf fastmath)",
            "    for r in range(X.shape[1]):",
            "        for k in range(X.shape[2]):",
            "            for m in range(X.shape[0]):",
            "                probe += X[m, r, k] * 0.0",
            "    if Y is None:",
            "        return probe == 0",
            f"    if Y.shape[2] != {nL}:  # class labels",
            "        outside = 0",
            "        for r in range(Y.shape[1]):",
            "            for m in range(Y.shape[0]):",
            f"                outside += not (0 <= Y[m, r, 0] < {nL})",
            "        return outside == 0 and probe == 0",
            "    for r in range(Y.shape[1]):",
            "        for j in range(Y.shape[2]):",
            "            for m in range(Y.shape[0]):",
            "                probe += Y[m, r, j] * 0.0",
            "    return probe == 0",
            "",
            "",
            "@kernel",
            "def _optimizer_fits(flats, hypers):",
            '    """One optimizer kind for every member, with its state rows in ``flats``."""',
            "    kind = hypers[0, optim.KIND]",
            "    for m in range(hypers.shape[0]):",
            "        if hypers[m, optim.KIND] != kind:",
            "            return False",
            f"    return flats.shape[0] == 4 if kind == {ADAM_KIND} else flats.shape[0] == 2 or flats.shape[0] == 3",
            "",
            "",
            "@kernel",
            "def _coefficients(h, m):",
            '    """Member m\'s update coefficients (optim.coefficients) from its row of ``hypers``."""',
            "    return optim.coefficients(T, h[m, optim.KIND], optim.learning_rate(h[m]), h[m, optim.BETA1],",
            "                              h[m, optim.BETA2], h[m, optim.EPS], h[m, optim.WEIGHT_DECAY],",
            "                              h[m, optim.NESTEROV], h[m, optim.STEP])",
            "",
            "",
        ]
        for upd in UPDATES:
            text += self.apply(*upd)
        text += [
            "@kernel",
            "def _train_block(flats, hypers, buf, s, X, Y, lo, cnt, labels, same, out):",
            '    """One train step for members lo .. lo + cnt in the slot at ``s``: ``out`` gets their losses."""',
            "    n = X.shape[1]",
            f"    scale = T(1) / T({denominator})",
            *indent(self.load_params(), 4),
            "    for i in range(cnt):",
            f"        buf[U(s + {self.LOSS} + i)] = 0",
            "    for row in range(n):",
            f"        a = s + {self.ACTS}",
            "        first = row == 0  # the first row sets the gradient, the others add to it",
            *indent(self.load_row(True) + dedent(self.forward()) + self.output_error() + dedent(self.backward()),
                    8),
            "    # the update: each lane's coefficients (one set when every member has the same hyperparameters)",
            f"    c = s + {self.C}",
            "    if same:",
            "        k = _coefficients(hypers, lo)",
            "        for i in range(cnt):",
            *(f"            buf[U(c + {r * L} + i)] = k[{r}]" for r in range(7)),
            "    else:",
            "        for i in range(cnt):",
            "            k = _coefficients(hypers, lo + i)",
            *(f"            buf[U(c + {r * L} + i)] = k[{r}]" for r in range(7)),
            "    for i in range(cnt):",
            f"        buf[U(s + {self.STATUS} + i)] = buf[U(s + {self.LOSS} + i)] * T(0)  # NaN for a loss not finite",
            f"    if hypers[0, optim.KIND] == {ADAM_KIND}:",
            "        _apply_adam(flats, buf, s, lo, cnt)",
            "    elif flats.shape[0] == 3:",
            "        _apply_momentum(flats, buf, s, lo, cnt)",
            "    else:",
            "        _apply_sgd(flats, buf, s, lo, cnt)",
            "    for i in range(cnt):",
            f"        if buf[U(s + {self.STATUS} + i)] == 0:",
            f"            out[lo + i] = buf[U(s + {self.LOSS} + i)] * scale",
            "            hypers[lo + i, optim.STEP] += 1",
            "        else:",
            "            out[lo + i] = np.nan",
            "",
            "",
            "@kernel",
            "def _predict_block(flats, buf, s, X, lo, cnt, out):",
            '    """The outputs of members lo .. lo + cnt, in the slot at ``s``."""',
            *indent(self.load_params(), 4),
            "    for row in range(X.shape[1]):",
            f"        a = s + {self.ACTS}",
            *indent(self.load_row(False) + dedent(self.forward()), 8),
            f"        for j in range({nL}):",
            "            for i in range(cnt):",
            f"                out[lo + i, row, j] = buf[U({a_out} + i)]",
            "",
            ""]
        for suffix, parallel in (("", False), ("_parallel", True)):
            loop = "prange" if parallel else "range"
            text += [
                f"@kernel(parallel={parallel})",
                f"def train_step{suffix}(flats, spec, hypers, works, X, Y, out):",
                '    """As fastbp.kernels.population_train_step; also False, touching nothing, for arrays of other',
                '    shapes, a ``works`` too small, or members of different optimizer kinds."""',
                "    if not (_fits(flats, works, X, Y, out) and hypers.shape[0] == X.shape[0]",
                "            and hypers.shape[1] == optim.HYPER_SIZE and _optimizer_fits(flats, hypers)",
                "            and _inputs_ok(X, Y)):",
                "        return False",
                "    N = X.shape[0]",
                "    buf = works.reshape(works.size)",
                f"    labels = Y.shape[2] != {nL}",
                "    same = same_hypers(hypers)",
                "    blocks = (N + LANES - 1) // LANES",
                "    groups = min(GROUPS, blocks)",
                f"    for q in {loop}(groups):",
                "        for b in range(q, blocks, groups):",
                "            lo = b * LANES",
                "            cnt = min(LANES, N - lo)",
                "            _train_block(flats, hypers, buf, q * SLOT, X, Y, lo, cnt, labels, same, out)",
                "    return True",
                "",
                "",
                f"@kernel(parallel={parallel})",
                f"def predict{suffix}(flats, spec, works, X, out):",
                '    """As fastbp.kernels.population_predict; also False for arrays of other shapes or a ``works`` too',
                '    small."""',
                "    N = X.shape[0]",
                f"    if not (_fits(flats, works, X, out, out) and out.shape[2] == {nL} and _inputs_ok(X, None)):",
                "        return False",
                "    buf = works.reshape(works.size)",
                "    blocks = (N + LANES - 1) // LANES",
                "    groups = min(GROUPS, blocks)",
                f"    for q in {loop}(groups):",
                "        for b in range(q, blocks, groups):",
                "            lo = b * LANES",
                "            _predict_block(flats, buf, q * SLOT, X, lo, min(LANES, N - lo), out)",
                "    return True",
                "",
                ""]
        return "\n".join(text).rstrip() + "\n"
