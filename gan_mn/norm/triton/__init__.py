"""MN's training passes as hand-written Triton kernels, for CUDA (and for Triton's CPU
interpreter, ``TRITON_INTERPRET=1``, which is how the tests check them).

- :mod:`.kernels`: the six ``@triton.jit`` kernels (device code; imported on first use,
  so that importing the layer needs no Triton);
- :mod:`.plan`: the host side, :class:`TritonKernels`: one plan per input shape (tiles,
  grids, scratch), then the launches of each step.
"""

from gan_mn.norm.triton.plan import TritonKernels

__all__ = ["TritonKernels"]
