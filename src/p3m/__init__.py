"""p3m: privacy-preserving portrait matting."""

__version__ = "0.1.0"
