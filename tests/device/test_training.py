"""Training on the mpsgraph device matches the CPU, and model.to("mpsgraph")
moves Parameters in place (issue 8, item 1: optimizers built before .to() and
tied weights must keep working, as they do with CUDA)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mps_ext  # noqa: F401

DEV = "mpsgraph"


@pytest.fixture(autouse=True)
def _quiet_fallback(monkeypatch):
    monkeypatch.setenv("MPS_EXT_FALLBACK", "silent")


# --- .to() semantics ---------------------------------------------------------------

def test_module_to_moves_parameters_in_place():
    m = nn.Linear(3, 2)
    params = list(m.parameters())
    m.weight.grad = torch.ones_like(m.weight)
    grad = m.weight.grad
    m.to(DEV)
    assert all(a is b for a, b in zip(params, m.parameters()))
    assert m.weight.device.type == DEV and isinstance(m.weight, nn.Parameter)
    assert m.weight.grad is grad and grad.device.type == DEV
    m.cpu()
    assert m.weight is params[0] and m.weight.device.type == "cpu"


def test_shallow_copy_type_and_set_data_both_ways():
    c, d = torch.randn(2, 2), torch.randn(2, 2, device=DEV)
    assert torch._has_compatible_shallow_copy_type(c, d)
    assert torch._has_compatible_shallow_copy_type(d, c)
    assert torch._has_compatible_shallow_copy_type(d, d)
    assert not torch._has_compatible_shallow_copy_type(d, torch.randn(2, 2).to_sparse())
    p = nn.Parameter(torch.zeros(2, 2))
    p.data = d
    assert p.device.type == DEV and p.data_ptr() == d.data_ptr() and isinstance(p, nn.Parameter)
    d2 = torch.randn(2, 2, device=DEV)
    d2.data = c
    assert d2.device.type == "cpu" and d2.data_ptr() == c.data_ptr()


def test_tied_weights_stay_one_parameter():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head}).to(DEV)
    assert model["emb"].weight is model["head"].weight
    assert len(list(model.parameters())) == 1


def test_optimizer_created_before_to_updates_the_moved_weights():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    model.to(DEV)
    x = torch.randn(8, 4, device=DEV)
    model(x).square().mean().backward()
    opt.step()
    assert opt.param_groups[0]["params"][0] is model.weight
    assert not torch.equal(model.weight.detach().cpu(), before)


# --- CPU-parity training -----------------------------------------------------------

def train(model, opt, batches, device, loss_fn):
    torch.manual_seed(1234)  # same dropout masks: the device generator is the CPU's mt19937
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_same_training(make_model, make_opt, batches, loss_fn, rtol=1e-4, atol=1e-5, move_before_opt=False):
    torch.manual_seed(0)
    ref = make_model()
    dev = copy.deepcopy(ref)
    o_ref = make_opt(ref.parameters())
    if move_before_opt:
        dev.to(DEV)
        o_dev = make_opt(dev.parameters())
    else:
        o_dev = make_opt(dev.parameters())  # the pattern of issue 8: optimizer first, then .to()
        dev.to(DEV)
    l_ref = train(ref, o_ref, batches, "cpu", loss_fn)
    l_dev = train(dev, o_dev, batches, DEV, loss_fn)
    torch.testing.assert_close(torch.tensor(l_dev), torch.tensor(l_ref), rtol=rtol, atol=atol)
    for (name, p), q in zip(ref.named_parameters(), dev.parameters()):
        assert q.device.type == DEV, name
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=rtol, atol=atol, msg=name)
    for (name, b), c in zip(ref.named_buffers(), dev.buffers()):
        torch.testing.assert_close(c.cpu(), b, rtol=rtol, atol=atol, msg=name)
    assert l_ref[-1] < l_ref[0]  # it did learn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8 * 1 * 1 * 4, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.adaptive_avg_pool2d(x, (2, 2))
        return self.fc(self.drop(x.flatten(1)))


def test_cnn_with_batchnorm_pooling_dropout_trains_like_cpu():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 10, 10, generator=g), torch.randint(0, 3, (8,), generator=g))] * 6
    assert_same_training(SmallCNN, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), batches, F.cross_entropy)


class LSTMRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 12, num_layers=2, batch_first=True)
        self.out = nn.Linear(12, 1)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.out(y[:, -1])


def test_lstm_trains_like_cpu():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 7, 3, generator=g), torch.randn(6, 1, generator=g))] * 6
    assert_same_training(LSTMRegressor, lambda p: torch.optim.Adam(p, lr=0.01), batches, F.mse_loss)


class TinyGPT(nn.Module):
    """Token + position embeddings, one pre-norm transformer block, and an
    output head tied to the token embedding."""

    def __init__(self, vocab=17, dim=16, heads=2, ctx=8):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(ctx, dim)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        # no qkv bias: the key bias has a zero gradient (softmax ignores it), and
        # Adam would turn rounding noise there into full-size, device-dependent steps
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied
        self.heads = heads

    def forward(self, idx):
        b, t = idx.shape
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        q, k, v = self.qkv(self.ln1(x)).split(x.shape[-1], dim=-1)
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, -1)))
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln_f(x))


def gpt_loss(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def test_tiny_gpt_with_tied_embeddings_trains_like_cpu_with_optimizer_built_before_to():
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, 17, (4, 9), generator=g)
    batches = [(seq[:, :-1], seq[:, 1:])] * 6
    model = TinyGPT()
    assert len([p for p in model.parameters()]) == len({id(p) for p in model.parameters()})
    assert_same_training(TinyGPT, lambda p: torch.optim.AdamW(p, lr=3e-3), batches, gpt_loss, rtol=2e-4, atol=2e-5)
    dev = TinyGPT().to(DEV)
    assert dev.head.weight is dev.tok.weight
