"""PyTorch interop: train a torch model with a numopt optimizer, zero-copy, and move optimizer state.

:func:`bind` makes a numopt optimizer whose flat buffers *are* a torch model's
parameter and gradient storage (``loss.backward()`` writes straight into
numopt's gradient buffer). :func:`from_torch_state_dict` and
:func:`to_torch_state_dict` convert optimizer state dicts, described next.

A run can move between ``torch.optim`` and numopt in either direction and go on
along the same trajectory: both use the same layout (``{'state': {index: {...}},
'param_groups': [...]}``, parameters numbered in group order) and the same state
keys, so only the value types change:

============================  ==============================  ==============================
value                         torch                           numopt
============================  ==============================  ==============================
``'step'``                    0-d float32 tensor [#]_         Python float
per-parameter scalars [#]_    0-d tensors [#]_                Python floats
state tensors                 tensors                         NumPy arrays (copies)
hyperparameters               numbers (or 0-d tensors)        Python numbers
============================  ==============================  ==============================

.. [#] float64 when torch's default dtype is float64, as ``torch.optim`` does.
.. [#] NAdam's ``'mu_product'``, ASGD's ``'eta'`` and ``'mu'``.
.. [#] torch creates them in float32 (or its default dtype) and its
   ``load_state_dict`` casts them to the parameter's dtype; numopt keeps float64
   numbers and hands them over as float64 tensors, so nothing is rounded before
   torch's own cast.

torch is imported inside these functions only: ``import numopt`` never imports it.

Examples
--------
>>> import numpy as np, torch, numopt                             # doctest: +SKIP
>>> from numopt.interop.torch import from_torch_state_dict, to_torch_state_dict
>>> topt = torch.optim.Adam(model.parameters(), lr=1e-3)          # doctest: +SKIP
>>> ...                                                           # train with torch
>>> params = [numopt.Parameter(p.detach().numpy().copy()) for p in model.parameters()]
>>> opt = numopt.Adam(params, lr=1e-3)                            # doctest: +SKIP
>>> opt.load_state_dict(from_torch_state_dict(topt.state_dict()))  # doctest: +SKIP
>>> topt.load_state_dict(to_torch_state_dict(opt.state_dict()))    # and back  # doctest: +SKIP
"""

from __future__ import annotations

# The conversion lives in torch_state, bind in torch_bind; this module is the public face of both.
from .torch_bind import TorchBinding, bind
from .torch_state import SCALAR_STATE_KEYS, from_torch_state_dict, to_torch_state_dict

__all__ = ["SCALAR_STATE_KEYS", "TorchBinding", "bind", "from_torch_state_dict", "to_torch_state_dict"]
