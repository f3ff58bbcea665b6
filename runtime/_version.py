"""The one version string of tumorscan: read by setuptools at build time and by `tumorscan.__version__`."""

__version__ = "0.1.0"
