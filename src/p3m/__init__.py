"""p3m: privacy-preserving portrait matting."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: `from p3m import Matter` without importing torch for every `import p3m`
    if name == "Matter":
        from p3m.infer.matter import Matter

        return Matter
    raise AttributeError(f"module 'p3m' has no attribute {name!r}")
