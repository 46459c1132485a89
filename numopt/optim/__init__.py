"""The optimizer classes, one module each, named as in ``torch.optim``."""

from .sgd import SGD

# Adam family (Adam, AdamW, Adamax, NAdam, RAdam):
# isort: split
from .adam import Adam
from .adamax import Adamax
from .adamw import AdamW
from .nadam import NAdam
from .radam import RAdam

# RMS family (Adagrad, Adadelta, RMSprop):
# isort: split
from .adadelta import Adadelta
from .adagrad import Adagrad
from .rmsprop import RMSprop

# Other optimizers (Rprop, ASGD, Adafactor, SparseAdam, Muon, LBFGS):
# isort: split
from .adafactor import Adafactor
from .asgd import ASGD
from .lbfgs import LBFGS
from .muon import Muon
from .rprop import Rprop
from .sparse_adam import SparseAdam

# Optimizers torch.optim declines (each follows a pinned third-party reference):
# isort: split
from .adan import Adan
from .ademamix import AdEMAMix
from .adopt import ADOPT
from .lion import Lion
from .lookahead import Lookahead
from .prodigy import Prodigy
from .schedulefree import AdamWScheduleFree, SGDScheduleFree

# torch.optim.lr_scheduler and torch.optim.swa_utils, under the same names
# isort: split
from .. import lr_scheduler, swa_utils

__all__ = sorted(name for name in dir() if name[:1].isupper())
