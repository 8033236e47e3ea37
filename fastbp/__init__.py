"""fastbp: dense neural networks trained by backpropagation in Numba kernels."""

__version__ = "0.1.0"

from . import kernels, schedules  # noqa: E402  (the @njit API; learning-rate schedules)
from .network import Network  # noqa: E402
from .optim import SGD, Adam  # noqa: E402
from .population import Population  # noqa: E402
from .dispatch import warm  # noqa: E402

__all__ = ["Network", "Population", "SGD", "Adam", "warm", "kernels", "schedules", "__version__"]
