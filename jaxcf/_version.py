"""The installed version of jaxcf (read by checkpoint metadata without importing the package
root)."""

__version__ = "0.1.0"
