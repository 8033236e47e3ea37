"""A network signature as the generators of compiled kernels see it (:mod:`.codegen` for one network,
:mod:`.codegen_population` for a population): the offsets of every parameter and unit, and the statements both
generators write alike (the sums over a unit's inputs in chunks, and what completes a unit's sum)."""

import numpy as np

from .. import activations as act
from ..config import CHUNK, GROUPS, TILE_BYTES  # noqa: F401 (the generators' tunables)

GENERATOR_VERSION = 2  # part of the cache key, beside the hash of every fastbp source file


def signature(sizes, hidden, output, loss, dtype):
    """The tuple that shapes the generated code (and names its cache entry): ``hidden`` a name, or a tuple of names
    (a list, as JSON gives it back, becomes one)."""
    hidden = hidden if isinstance(hidden, str) else tuple(hidden)
    return (tuple(int(s) for s in sizes), hidden, output, loss, np.dtype(dtype).name)


def tile_rows(dtype):
    """Rows per tile for this dtype."""
    return TILE_BYTES // np.dtype(dtype).itemsize


class Signature:
    """One signature's sizes, activations, loss and dtype, with the offsets of its parameters and work blocks."""

    def __init__(self, sizes, hidden, output, loss, dtype):
        self.sizes, self.hidden, self.output, self.loss, self.dtype = sizes, hidden, output, loss, dtype
        self.L = len(sizes) - 1
        self.names = ((hidden,) * (self.L - 1) if isinstance(hidden, str) else tuple(hidden)) + (output,)
        self.tile = tile_rows(dtype)
        # Parameter offsets: layer l's weight (n_out, n_in) at W[l], its bias at B[l].
        self.W, self.B, off = [], [], 0
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.W.append(off)
            self.B.append(off + a * b)
            off += b * (a + 1)
        self.n_params = off
        # Work blocks, in units: A_0 .. A_L (input copy, activations), Z (output pre-activation), Y (targets),
        # D_1 .. D_L (deltas). A tile stores block (units, TILE); a single row stores the same blocks with stride 1.
        self.units, u = {}, 0
        for l, s in enumerate(sizes):
            self.units[f"A{l}"] = u
            u += s
        for blk in ("Z", "Y"):
            self.units[blk] = u
            u += sizes[-1]
        for l in range(1, self.L + 1):
            self.units[f"D{l}"] = u
            u += sizes[l]
        for l in range(1, self.L):  # P_l: phi'(z) of A_l, where its activation keeps its derivative
            if self.keeps(l - 1):
                self.units[f"P{l}"] = u
                u += sizes[l]
        self.width = u

    def name(self, l):
        """The activation after layer l (0-based)."""
        return self.names[l]

    def keeps(self, l):
        """Whether the activation after layer l keeps its derivative (act.keeps_derivative)."""
        return act.keeps_derivative(act.CODES[self.names[l]])

    def sums(self, l):
        """The block layer l's sums z go to: A_{l+1}, activated in place, or Z (the output's), or P_{l+1} (which then
        holds phi'(z))."""
        return "Z" if l == self.L - 1 else f"P{l + 1}" if self.keeps(l) else f"A{l + 1}"

    def derivative_source(self, l):
        """The block the backward pass reads for phi' of the hidden A_l: P_l (phi' itself), or A_l."""
        return f"P{l}" if self.keeps(l - 1) else f"A{l}"

    def chunks(self, n_in, emit):
        """Lines for the inputs 0 .. n_in in passes of CHUNK: the first pass, a loop over the middle ones, the last
        (which may be the first). ``emit(start, count, first, last, indent)`` writes one pass."""
        starts = list(range(0, n_in, CHUNK))
        if len(starts) == 1:
            return emit("0", n_in, True, True, 8)
        lines = emit("0", CHUNK, True, False, 8)
        if len(starts) > 2:
            lines.append(f"        for c in range({starts[1]}, {starts[-1]}, {CHUNK}):")
            lines += emit("c", CHUNK, False, False, 12)
        return lines + emit(str(starts[-1]), n_in - starts[-1], False, True, 8)

    def forward_finish(self, l, stride, lane):
        """finish(value) for a unit of layer l at ``lane`` (units ``stride`` apart): z, or a = phi(z); the output
        layer keeps z beside a. The activation is applied as the sum completes, never by a pass of its own over the
        row (in place, LLVM turns relu's store into a masked store, microcoded and slow on AMD)."""
        name = self.name(l)
        shift = (self.units[f"A{l + 1}"] - self.units[self.sums(l)]) * stride  # from z to a: 0 if in place

        def finish(v):
            if name == "softmax" or (name == "identity" and shift == 0):
                return [f"buf[U(o + {lane})] = {v}"]
            if shift == 0:
                return [f"buf[U(o + {lane})] = act.{name}({v})"]
            if self.keeps(l):  # a, and phi'(z) where z was
                return [f"buf[U(o - {-shift} + {lane})], buf[U(o + {lane})] = act.{name}_and_derivative({v})"]
            return [f"z = {v}", f"buf[U(o + {lane})] = z", f"buf[U(o - {-shift} + {lane})] = act.{name}(z)"]
        return finish

    def delta_finish(self, l, lane, a):
        """finish(value) for a delta of the hidden A_l at ``lane``: times phi'(z), read at offset ``a`` of the block
        :meth:`derivative_source` (from a = phi(z), or phi'(z) itself)."""
        name = self.name(l - 1)

        def finish(v):
            if name == "identity":
                return [f"buf[U(o + {lane})] = {v}"]
            if self.keeps(l - 1):
                return [f"buf[U(o + {lane})] = ({v}) * buf[U({a} + {lane})]"]
            return [f"buf[U(o + {lane})] = ({v}) * act.{name}_derivative(buf[U({a} + {lane})])"]
        return finish


def indent(lines, n):
    return [" " * n + line if line else line for line in lines]


def dedent(lines):
    """Lines written for a function body (4 spaces) at the left margin."""
    return [line[4:] for line in lines]
