"""Functional forms of the mps_ext operators, with torch's names and defaults."""
import torch

from .. import _C


def softshrink(input: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    r"""Soft shrinkage, like :func:`torch.nn.functional.softshrink`.

    .. math::
        \text{softshrink}(x) = x - \lambda \text{ if } x > \lambda;\;
        x + \lambda \text{ if } x < -\lambda;\; 0 \text{ otherwise}

    Differentiable; runs as one fused graph.
    """
    if torch.compiler.is_compiling():  # traceable form
        return torch.ops.mps_ext.softshrink(input, lambd)
    return _C._softshrink(input, lambd)  # eager: the same op, minus torch.ops' Python overhead


__all__ = ["softshrink"]
