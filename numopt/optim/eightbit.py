"""bitsandbytes-style names for 8-bit state: ``Adam8bit``, ``AdamW8bit``, ``Lion8bit``.

Each is its optimizer with ``state_dtype='int8'`` by default (``numopt.lowbit``): block-wise 8-bit
state with bitsandbytes' dynamic map and block size, full precision for parameters under
``min_8bit_size`` elements (4096, bitsandbytes' default).
"""

from __future__ import annotations

from typing import Any

from .adam import Adam
from .adamw import AdamW
from .lion import Lion

__all__ = ["Adam8bit", "AdamW8bit", "Lion8bit"]


class Adam8bit(Adam, register=False):
    """:class:`Adam` with 8-bit state (``state_dtype='int8'``), as ``bitsandbytes.optim.Adam8bit``.

    Takes :class:`Adam`'s arguments; ``state_dtype`` and ``min_8bit_size`` may still be given.

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.ones(8192, np.float32))
    >>> opt = numopt.Adam8bit([w], lr=0.1)
    >>> w.grad = np.ones(8192, np.float32)
    >>> opt.step()
    >>> type(opt.state[w]["exp_avg"]).__name__, round(float(w.data[0]), 6)
    ('Int8State', 0.9)
    """

    def __init__(self, params: Any, *args: Any, state_dtype: str | None = "int8", **kwargs: Any) -> None:
        super().__init__(params, *args, state_dtype=state_dtype, **kwargs)


class AdamW8bit(AdamW, register=False):
    """:class:`AdamW` with 8-bit state (``state_dtype='int8'``), as ``bitsandbytes.optim.AdamW8bit``.

    Takes :class:`AdamW`'s arguments; ``state_dtype`` and ``min_8bit_size`` may still be given.
    """

    def __init__(self, params: Any, *args: Any, state_dtype: str | None = "int8", **kwargs: Any) -> None:
        super().__init__(params, *args, state_dtype=state_dtype, **kwargs)


class Lion8bit(Lion, register=False):
    """:class:`Lion` with 8-bit state (``state_dtype='int8'``), as ``bitsandbytes.optim.Lion8bit``.

    Takes :class:`Lion`'s arguments; ``state_dtype`` and ``min_8bit_size`` may still be given.
    """

    def __init__(self, params: Any, *args: Any, state_dtype: str | None = "int8", **kwargs: Any) -> None:
        super().__init__(params, *args, state_dtype=state_dtype, **kwargs)
