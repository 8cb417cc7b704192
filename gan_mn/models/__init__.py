"""GAN models by family (DCGAN, SNGAN's standard CNN and ResNet) with norms chosen per
layer (torch only)."""

from gan_mn.models.dcgan import DCGAN_WIDTHS, DCGANDiscriminator, DCGANGenerator, dcgan_widths
from gan_mn.models.eval_mode import NORM_MODES, sampling
from gan_mn.models.factory import FAMILIES, Family, build_models
from gan_mn.models.layers import LatentGenerator
from gan_mn.models.resnet import ResNetDiscriminator, ResNetGenerator
from gan_mn.models.sngan import SNGANDiscriminator, SNGANGenerator

__all__ = ["DCGAN_WIDTHS", "FAMILIES", "NORM_MODES", "DCGANDiscriminator", "DCGANGenerator",
           "Family", "LatentGenerator", "ResNetDiscriminator", "ResNetGenerator",
           "SNGANDiscriminator", "SNGANGenerator", "build_models", "dcgan_widths", "sampling"]
