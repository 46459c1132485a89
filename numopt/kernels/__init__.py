"""Numba update rules over 1-D flat arrays and scalar hyperparameters.

One module per algorithm family. Every kernel updates its arrays in place in a
single pass over memory, parallel over chunks of ``numopt._jit.CHUNK``
elements. Scalars must already have the arrays' dtype (a Python float is a
float64 in Numba and would promote a float32 loop); per-step scalars such as
bias corrections are computed by the caller in float64.
"""
