"""RNG of the mpsgraph device: seeding, states, per-device lists, generators,
fork_rng, and reproducible dropout."""
import pytest
import torch
import torch.nn.functional as F

import mps_ext  # noqa: F401

DEV = "mpsgraph"


@pytest.fixture(autouse=True)
def _quiet_fallback(monkeypatch):
    monkeypatch.setenv("MPS_EXT_FALLBACK", "silent")


def test_rng_state_all_round_trip():
    states = torch.mpsgraph.get_rng_state_all()
    assert len(states) == torch.mpsgraph.device_count() and states[0].dtype == torch.uint8
    a = torch.rand(5, device=DEV)
    torch.mpsgraph.set_rng_state_all(states)
    assert torch.equal(torch.rand(5, device=DEV).cpu(), a.cpu())
    with pytest.raises(ValueError, match="expected 1 state"):
        torch.mpsgraph.set_rng_state_all(states * 2)


def test_seed_and_initial_seed():
    torch.mpsgraph.seed()
    s = torch.mpsgraph.initial_seed()
    torch.mpsgraph.seed_all()
    assert isinstance(s, int)
    torch.manual_seed(2**63 + 5)  # torch.manual_seed reaches the device too (low 64 bits)
    assert torch.mpsgraph.initial_seed() == 2**63 + 5


def test_fork_rng_restores_the_device_state():
    torch.manual_seed(3)
    with torch.random.fork_rng(device_type=DEV):
        torch.rand(10, device=DEV)
    a = torch.rand(3, device=DEV)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(3, device=DEV).cpu(), a.cpu())


def test_dropout_is_reproducible_and_generators_are_independent():
    x = torch.ones(1000, device=DEV)
    torch.manual_seed(11)
    a = F.dropout(x, 0.5)
    torch.manual_seed(11)
    b = F.dropout(x, 0.5)
    assert torch.equal(a.cpu(), b.cpu()) and 0.3 < (a.cpu() == 0).float().mean() < 0.7
    g1, g2 = torch.Generator(DEV).manual_seed(1), torch.Generator(DEV).manual_seed(1)
    assert torch.equal(torch.rand(4, device=DEV, generator=g1).cpu(), torch.rand(4, device=DEV, generator=g2).cpu())
    g1.set_state(g2.get_state())
    assert torch.equal(torch.randint(0, 9, (6,), device=DEV, generator=g1).cpu(),
                       torch.randint(0, 9, (6,), device=DEV, generator=g2).cpu())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_distributions_are_native_and_draw_the_cpu_stream(dtype):
    # Seeded alike, the device draws the CPU's numbers for every distribution
    # (float64 too, on the reference runtime), without the CPU fallback.
    def draws(dev):
        torch.manual_seed(3)
        g = torch.Generator(dev).manual_seed(9)
        return [torch.randn(40, dtype=dtype, device=dev), torch.rand(33, dtype=dtype, device=dev),
                torch.empty(17, dtype=dtype, device=dev).uniform_(-2.3, 0.7),
                torch.empty(20, dtype=dtype, device=dev).normal_(0.1, 3.3),
                torch.randint(0, 7, (9,), dtype=dtype, device=dev),
                torch.bernoulli(torch.full((30,), 0.3, dtype=dtype, device=dev)),
                torch.empty(25, dtype=dtype, device=dev).bernoulli_(0.6),
                F.dropout(torch.ones(30, dtype=dtype, device=dev), 0.4),
                torch.randn(5, dtype=dtype, device=dev, generator=g)]
    expected = draws("cpu")
    before = torch.ops.mps_ext._fallback_count()
    got = draws(DEV)
    assert torch.ops.mps_ext._fallback_count() == before
    for e, r in zip(expected, got):
        assert r.dtype == dtype and r.device.type == DEV
        assert torch.equal(r.cpu(), e)
