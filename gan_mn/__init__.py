"""gan-mn: GANs trained with Mixture Normalization."""

__version__ = "0.1.0"
