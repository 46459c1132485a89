"""The optimizer classes, one module each, named as in ``torch.optim``."""

from .sgd import SGD

# Adam family (Adam, AdamW, Adamax, NAdam, RAdam):
# RMS family (Adagrad, Adadelta, RMSprop):
# Other optimizers (Rprop, ASGD, Adafactor, SparseAdam, Muon, LBFGS):

__all__ = sorted(name for name in dir() if name[:1].isupper())
