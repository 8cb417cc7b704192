"""The layer alone, in plain PyTorch: MixtureNorm2d as a drop-in for BatchNorm2d, its
mixture after a few training batches, eval mode on running statistics, and the state it
keeps (buffers only, so ``state_dict`` and ``torch.save`` carry all of it).

    python examples/layer_without_lightning.py
"""

from __future__ import annotations

import torch
from torch import nn

from gan_mn.norm import MixtureNorm2d


def main() -> None:
    torch.manual_seed(0)
    # two clusters of activations per channel: the kind of batch a mixture fits and a
    # single Gaussian (BatchNorm) does not
    def batch() -> torch.Tensor:
        shift = torch.where(torch.rand(64, 1, 1, 1) < 0.5, -3.0, 3.0)
        return shift + torch.randn(64, 8, 4, 4)

    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1),
                        MixtureNorm2d(8, num_components=2, kernels="eager"), nn.ReLU())
    norm = net[1]
    for _ in range(5):
        net(batch()).mean().backward()  # training mode: each batch's own mixture
    print("running mixture weights (shared by the channels):", norm.running_weight.tolist())
    out = net.eval()(batch())  # eval mode: the running mixture, like BatchNorm's
    print(f"eval output {tuple(out.shape)}, mean {out.mean():.3f}")
    state = norm.state_dict()
    print("state:", ", ".join(f"{k} {tuple(v.shape)}" for k, v in state.items()))
    copy = MixtureNorm2d(8, num_components=2, kernels="eager")
    copy.load_state_dict(state)
    with torch.no_grad():
        x = net[0](batch())
        same = torch.equal(copy.eval()(x), norm(x))
    print("a copy loaded from the state dict computes the same:", same)


if __name__ == "__main__":
    main()
