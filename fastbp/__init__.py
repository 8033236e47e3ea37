"""fastbp: dense neural networks trained by backpropagation in Numba kernels."""

__version__ = "0.1.0"

from . import kernels  # noqa: E402  (the @njit API)
from .network import Network  # noqa: E402
from .optim import SGD, Adam  # noqa: E402
from .population import Population  # noqa: E402

__all__ = ["Network", "Population", "SGD", "Adam", "kernels", "__version__"]
