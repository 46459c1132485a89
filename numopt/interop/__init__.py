"""Bridges between numopt and other libraries.

``numopt.interop.torch``
    :func:`~numopt.interop.torch.bind` trains a torch model with a numopt
    optimizer whose flat buffers are the model's parameter and gradient storage;
    :func:`~numopt.interop.torch.from_torch_state_dict` and
    :func:`~numopt.interop.torch.to_torch_state_dict` move optimizer state between
    ``torch.optim`` and numopt in either direction. torch is imported only when
    one of them is called.
"""

from __future__ import annotations

from . import torch

__all__ = ["torch"]
