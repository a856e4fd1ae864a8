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
