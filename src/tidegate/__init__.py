"""tidegate: caching proxy, mirror and staging index for Python packages."""

__version__ = "0.1.0"
