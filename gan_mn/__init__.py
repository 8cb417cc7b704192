"""gan-mn: GANs trained with Mixture Normalization."""

from importlib.metadata import PackageNotFoundError, version

try:  # pyproject.toml holds the version, once; the installed metadata carries it
    __version__ = version("gan-mn")
except PackageNotFoundError:  # the source tree on the path without being installed
    __version__ = "unknown"
