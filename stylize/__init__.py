"""stylize: fast arbitrary style transfer with AdaIN."""

__all__ = ["Stylizer", "StyleStats"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # imported on first use (PEP 562), so `python -m stylize.tools.weights` does not find its modules
    # already imported by the package (runpy's RuntimeWarning) and `import stylize` stays light
    if name in __all__:
        from stylize import stylizer

        return getattr(stylizer, name)
    raise AttributeError(f"module 'stylize' has no attribute {name!r}")
