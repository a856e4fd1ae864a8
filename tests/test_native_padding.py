"""Reflection and replication padding (1-d/2-d/3-d, batched and not) and their
backwards on the mpsgraph device vs the CPU, with no CPU fallback."""
import pytest
import torch
import torch.nn.functional as F

import mps_ext
from test_native_ops import DEV, check, fallbacks

CASES = [  # (input shape, pad)
    ((2, 3, 7), (2, 1)), ((3, 5), (0, 4)), ((2, 3, 7), (3, 3)),
    ((2, 2, 5, 6), (1, 2, 3, 0)), ((2, 5, 6), (2, 2, 1, 1)),
    ((1, 2, 3, 4, 5), (1, 1, 2, 0, 1, 2)), ((2, 3, 4, 5), (0, 1, 1, 0, 2, 1)),
]


@pytest.mark.parametrize("decomposed", [False, True], ids=["kernel", "decomposition"])
@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("shape,pad", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_pad_forward_and_backward(mode, shape, pad, dtype, decomposed):
    # The reference runtime runs ATen's kernels ("aten.pad"); MPSGraph runs the
    # slices and concats (mps_ext.graph.decompositions()): both must be torch's.
    if decomposed:
        with mps_ext.graph.decompositions():
            test_pad_forward_and_backward(mode, shape, pad, dtype, False)
        return
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    check(lambda t: F.pad(t, pad, mode=mode), x)
    strided = torch.randn(*shape, 2, dtype=torch.float64).to(dtype)[..., 0]
    check(lambda t: F.pad(t, pad, mode=mode), strided)  # non-contiguous
    g = torch.randn(F.pad(x, pad, mode=mode).shape, dtype=torch.float64).to(dtype)

    def grad(t, gy):
        t = t.detach().requires_grad_()
        F.pad(t, pad, mode=mode).backward(gy)
        return t.grad

    tol = {"atol": 1e-2, "rtol": 1e-2} if dtype == torch.float16 else {}
    check(grad, x, g, **tol)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_pad_gradcheck(mode):
    x = torch.randn(2, 3, 4, dtype=torch.float64, device=DEV, requires_grad=True)
    before = fallbacks()
    assert torch.autograd.gradcheck(lambda t: F.pad(t, (2, 1, 1, 2), mode=mode), (x,))
    assert fallbacks() == before


def test_pad_errors_match_torch():
    x = torch.randn(1, 2, 3)
    with pytest.raises(RuntimeError, match="Padding size should be less than the corresponding input dimension"):
        F.pad(x.to(DEV), (3, 0), mode="reflect")
    with pytest.raises(RuntimeError):
        F.pad(torch.empty(1, 0, 3, device=DEV), (1, 1), mode="replicate")
