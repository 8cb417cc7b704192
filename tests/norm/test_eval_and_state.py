"""Eval mode uses the running mixture; state_dict restores behaviour exactly."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from gan_mn.norm import MixtureNorm2d, standing_statistics
from tests.helpers.activations import clustered

CENTRES = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, -3.0]])
STDS = torch.tensor([1.0, 1.5, 0.7])


def _batches(count: int, n: int = 16) -> list[torch.Tensor]:
    return [clustered(n, CENTRES, STDS, [0.5, 0.3, 0.2])[0] for _ in range(count)]


def _reference_eval(mn: MixtureNorm2d, x: torch.Tensor) -> torch.Tensor:
    """The spec's eval formula written out per component, independent of the layer."""
    samples = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()
    lam, mu, var = (t.double() for t in (mn.running_weight, mn.running_mean, mn.running_var))
    var_e = var + mn.eps
    logp = torch.stack([
        lam[k].log() - 0.5 * (var_e[k].log() + (samples - mu[k]) ** 2 / var_e[k]).sum(1)
        for k in range(mn.num_components)], 1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
    tau = torch.softmax(logp, 1)
    out = sum(tau[:, k:k + 1] / lam[k].sqrt() * (samples - mu[k]) / var_e[k].sqrt()
              for k in range(mn.num_components))
    out = out * mn.weight.double() + mn.bias.double()
    n, c, h, w = x.shape
    return out.reshape(n, h, w, c).permute(0, 3, 1, 2).float()


@pytest.mark.slow  # compiles with Inductor
def test_eval_uses_the_running_mixture() -> None:
    mn = MixtureNorm2d(2, num_components=3)
    with torch.no_grad():
        mn.weight.uniform_(0.5, 1.5)
        mn.bias.uniform_(-1, 1)
    for x in _batches(20):
        mn(x)
    mn.eval()
    before = {k: v.clone() for k, v in mn.state_dict().items()}
    x = _batches(1)[0]
    torch.testing.assert_close(mn(x), _reference_eval(mn, x), atol=1e-4, rtol=1e-4)
    for k, v in mn.state_dict().items():
        assert torch.equal(v, before[k]), f"eval forward changed {k}"


@pytest.mark.slow  # compiles with Inductor
def test_standing_statistics_average_the_given_batches() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 1), MixtureNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    for x in _batches(5):
        model(x)
    model.eval()
    batches = _batches(4)
    # Reference: each batch's own statistics (momentum 1 keeps just the last batch),
    # in the same order and with the same random stream, averaged by hand.
    reference = copy.deepcopy(model)
    for m in (reference[1], reference[4]):
        m.momentum = 1.0
        m.train()
    state = torch.get_rng_state()
    seen: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for x in batches:
            reference(x)
            for name, buf in reference.named_buffers():
                if "running" in name:
                    seen.setdefault(name, []).append(buf.clone())
    torch.set_rng_state(state)
    assert standing_statistics(model, batches) == 4
    buffers = dict(model.named_buffers())
    for name, values in seen.items():
        torch.testing.assert_close(buffers[name], torch.stack(values).mean(0))
    assert not model.training and not model[1].training and not model[4].training
    assert model[1].momentum == 0.1 and model[4].momentum == 0.1
    assert int(model[1].num_batches_tracked) == 4


@pytest.mark.slow  # compiles with Inductor
def test_standing_statistics_rejects_no_batches() -> None:
    model = nn.Sequential(MixtureNorm2d(2))
    for x in _batches(2):
        model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="batches"):
        standing_statistics(model, [])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.slow  # compiles with Inductor
@pytest.mark.parametrize("k", [1, 3])
def test_state_dict_round_trip_restores_behaviour(k: int) -> None:
    trained = MixtureNorm2d(2, num_components=k)
    for x in _batches(3):
        trained(x)
    assert set(trained.state_dict()) >= {
        "running_weight", "running_mean", "running_var", "em_weight", "em_mean", "em_var",
        "em_seeded", "num_batches_tracked", "weight", "bias"}
    loaded = MixtureNorm2d(2, num_components=k)
    loaded.load_state_dict(trained.state_dict())
    x = _batches(1)[0]
    trained.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(x), trained(x), atol=0, rtol=0)
    # Training continues from the loaded warm start: the same next step, bit for bit.
    trained.train()
    loaded.train()
    fresh = MixtureNorm2d(2, num_components=k)
    outs = []
    for m in (trained, loaded, fresh):
        torch.manual_seed(1)
        outs.append(m(x))
    torch.testing.assert_close(outs[1], outs[0], atol=0, rtol=0)
    for name, buf in loaded.state_dict().items():
        torch.testing.assert_close(buf, trained.state_dict()[name], atol=0, rtol=0)
    if k > 1:  # a module that was not loaded seeds afresh and ends elsewhere
        assert not torch.allclose(fresh.running_mean, trained.running_mean)
