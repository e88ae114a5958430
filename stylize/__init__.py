"""stylize: fast arbitrary style transfer with AdaIN."""

from stylize.stylizer import StyleStats, Stylizer

__all__ = ["Stylizer", "StyleStats"]
__version__ = "0.1.0"
