"""The optimizer classes, one module each, named as in ``torch.optim``."""

from .sgd import SGD

__all__ = ["SGD"]
