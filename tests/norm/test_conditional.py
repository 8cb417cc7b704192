"""Class-conditional MN and BN: at initialisation (one class, zero embeddings) each is its
unconditional layer bit for bit; gradients reach the embeddings of the classes in the
batch and no others; the layer contract (eval mode, state dict, DDP conversion,
convert_batchnorm) holds."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

from gan_mn.norm import (
    ConditionalBatchNorm2d,
    ConditionalMixtureNorm2d,
    MixtureNorm2d,
    SyncMixtureNorm2d,
    revert_sync,
)

KERNELS = ["eager", pytest.param("inductor", marks=pytest.mark.slow),
           pytest.param("triton", marks=pytest.mark.slow)]


def _steps(layer: nn.Module, conditional: bool) -> list[torch.Tensor]:
    """Three training batches then an eval batch, from one seed: outputs, input
    gradients and the buffers."""
    torch.manual_seed(0)
    out = []
    for i in range(4):
        layer.train(i < 3)
        x = torch.randn(6, 4, 3, 3, requires_grad=True)
        y = layer(x, torch.zeros(6, dtype=torch.long)) if conditional else layer(x)
        y.backward(torch.cos(y.detach()))
        out += [y.detach(), x.grad]
    inner = layer.norm if conditional else layer
    return out + [b.clone() for b in inner.buffers()]


@pytest.mark.parametrize("kernels", KERNELS)
def test_one_class_and_zero_embeddings_is_mn_bit_for_bit(interpret: None,
                                                         kernels: str) -> None:
    torch.manual_seed(1)
    plain = _steps(MixtureNorm2d(4, kernels=kernels), conditional=False)
    torch.manual_seed(1)
    cond = _steps(ConditionalMixtureNorm2d(4, 1, kernels=kernels), conditional=True)
    assert len(plain) == len(cond)
    for a, b in zip(plain, cond, strict=True):
        assert torch.equal(a, b)


def test_one_class_and_zero_embeddings_is_batchnorm_bit_for_bit() -> None:
    plain = _steps(nn.BatchNorm2d(4), conditional=False)
    cond = _steps(ConditionalBatchNorm2d(4, 1), conditional=True)
    for a, b in zip(plain, cond, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("make", [lambda: ConditionalMixtureNorm2d(4, 5, kernels="eager"),
                                  lambda: ConditionalBatchNorm2d(4, 5)])
def test_gradients_reach_the_classes_in_the_batch_only(make: object) -> None:
    layer = make()  # type: ignore[operator]
    x = torch.randn(8, 4, 3, 3)
    labels = torch.tensor([0, 3, 3, 0, 3, 0, 0, 3])
    layer(x, labels).pow(2).sum().backward()
    for embedding in (layer.embedding_gamma, layer.embedding_beta):
        touched = embedding.weight.grad.abs().sum(1) > 0
        assert touched.tolist() == [True, False, False, True, False]


def test_classes_get_their_own_gain_and_bias_after_one_shared_normalization() -> None:
    """Training and eval: class 0 (zero embeddings) gets the shared normalization as it
    is, class 1 twice it plus 3; the mixture is fitted once, to the whole batch."""
    layer = ConditionalMixtureNorm2d(4, 2, kernels="eager")
    with torch.no_grad():
        layer.embedding_gamma.weight[1] = 1.0  # class 1: gain 2
        layer.embedding_beta.weight[1] = 3.0   # and bias 3
    x = torch.randn(8, 4, 3, 3)
    labels = torch.tensor([0, 1] * 4)
    for training in (True, False):
        layer.train(training)
        twin = copy.deepcopy(layer)  # the same state and seed: the same fit of the batch
        torch.manual_seed(0)
        out = layer(x, labels)
        torch.manual_seed(0)
        h = twin(x, torch.zeros(8, dtype=torch.long))
        torch.testing.assert_close(out[0::2], h[0::2], rtol=0, atol=0)
        torch.testing.assert_close(out[1::2], 2 * h[1::2] + 3)


@pytest.mark.parametrize(("labels", "message"), [
    (torch.tensor([0, 1, 2, 0]), "labels must be in [0, 2), got 2"),
    (torch.tensor([0, -1, 1, 0]), "labels must be in [0, 2), got -1"),
    (torch.tensor([0.0, 1.0, 1.0, 0.0]), "labels must be N=4 integer class indices"),
    (torch.tensor([0, 1]), "labels must be N=4 integer class indices, got shape (2,)"),
])
def test_bad_labels_are_one_line(labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ConditionalMixtureNorm2d(4, 2, kernels="eager")(torch.randn(4, 4, 3, 3), labels)


def test_state_dict_ddp_conversion_and_convert_batchnorm() -> None:
    layer = ConditionalMixtureNorm2d(4, 3, num_components=5, kernels="eager")
    keys = set(layer.state_dict())
    assert {"embedding_gamma.weight", "embedding_beta.weight", "norm.running_mean",
            "norm.em_weight"} <= keys and "norm.weight" not in keys
    synced = SyncMixtureNorm2d.convert_sync_mixturenorm(layer)
    assert isinstance(synced.norm, SyncMixtureNorm2d) and synced.norm.num_components == 5
    assert synced.embedding_gamma is layer.embedding_gamma  # shared, not copied
    assert type(revert_sync(synced).norm) is MixtureNorm2d
    cbn = ConditionalBatchNorm2d(4, 3)
    with torch.no_grad():
        cbn.embedding_beta.weight.fill_(0.5)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), cbn)
    converted = MixtureNorm2d.convert_batchnorm(model, num_components=1, kernels="eager")
    cmn = converted[1]
    assert isinstance(cmn, ConditionalMixtureNorm2d) and cmn.num_components == 1
    assert torch.equal(cmn.embedding_beta.weight, torch.full((3, 4), 0.5))
    x, labels = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(cmn(model[0](x), labels),
                               cbn(model[0](x), labels), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        ConditionalBatchNorm2d(4, 0)
    with pytest.raises(ValueError, match="takes no affine option"):
        ConditionalMixtureNorm2d(4, 2, affine=True)
