"""On well separated clusters MN normalizes each cluster on its own, stably over steps."""

from __future__ import annotations

import pytest
import torch

from gan_mn.norm import MixtureNorm2d
from tests.helpers.activations import clustered

CENTRES = torch.tensor([[-20.0, 0.0, 5.0], [0.0, 20.0, -5.0], [20.0, -10.0, 0.0]])
STDS = torch.tensor([1.0, 2.0, 0.5])
FRACTIONS = [0.5, 0.3, 0.2]


@pytest.mark.slow  # compiles with Inductor
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_clusters_come_out_standardised_per_component(
        memory_format: torch.memory_format) -> None:
    mn = MixtureNorm2d(3, num_components=3)
    owner: list[int] | None = None
    for _ in range(6):
        x, labels = clustered(64, CENTRES, STDS, FRACTIONS)
        y = mn(x.contiguous(memory_format=memory_format)).detach()
        samples = y.permute(0, 2, 3, 1).reshape(-1, 3)
        flat = labels.reshape(-1)
        for k in range(3):
            out = samples[flat == k]
            torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-3, rtol=0)
            expected_std = torch.full((3,), (out.shape[0] / flat.numel()) ** -0.5)
            torch.testing.assert_close(out.std(0, unbiased=False), expected_std,
                                       atol=0, rtol=1e-3)
        # Component identity: the mixture row that models each cluster never changes.
        dist = torch.cdist(CENTRES, mn.em_mean)
        current = dist.argmin(1).tolist()
        assert sorted(current) == [0, 1, 2], "each cluster needs its own component"
        owner = owner or current
        assert current == owner
        actual = torch.bincount(flat, minlength=3).float() / flat.numel()
        torch.testing.assert_close(mn.em_weight[owner], actual, atol=1e-5, rtol=0)


@pytest.mark.slow  # compiles with Inductor
def test_running_mixture_is_the_average_of_the_cluster_statistics() -> None:
    mn = MixtureNorm2d(3, num_components=3, momentum=None)  # cumulative average
    means, variances = [], []
    for _ in range(5):
        x, labels = clustered(32, CENTRES, STDS, FRACTIONS)
        mn(x)
        samples = x.permute(0, 2, 3, 1).reshape(-1, 3)
        flat = labels.reshape(-1)
        means.append(torch.stack([samples[flat == k].mean(0) for k in range(3)]))
        variances.append(torch.stack([samples[flat == k].var(0) for k in range(3)]))
    order = torch.cdist(CENTRES, mn.running_mean).argmin(1)
    torch.testing.assert_close(mn.running_mean[order], torch.stack(means).mean(0))
    # One-pass variances on data shifted by one sample: clusters 40 sd apart cost
    # ~(40 sd)^2 * float32 epsilon of relative precision.
    torch.testing.assert_close(mn.running_var[order], torch.stack(variances).mean(0),
                               atol=0, rtol=5e-4)
    torch.testing.assert_close(mn.running_weight[order], torch.tensor(FRACTIONS),
                               atol=1e-3, rtol=0)
