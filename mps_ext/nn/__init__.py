"""Drop-in ``torch.nn`` modules backed by mps_ext operators."""
import torch

from . import functional
from .quantized import QuantizedLinear


class Softshrink(torch.nn.Module):
    r"""Drop-in for :class:`torch.nn.Softshrink`, backed by ``torch.ops.mps_ext.softshrink``.

    Args:
        lambd: the :math:`\lambda` value (must be no less than zero). Default: 0.5
    """

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return functional.softshrink(input, self.lambd)

    def extra_repr(self) -> str:
        return str(self.lambd)


__all__ = ["functional", "Softshrink", "QuantizedLinear"]
