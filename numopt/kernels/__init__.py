"""Numba update rules over 1-D flat arrays and scalar hyperparameters.

One module per algorithm family. Every kernel updates its arrays in place in a
single pass over memory: one ``prange`` loop over the elements, which Numba
splits evenly between threads and LLVM vectorizes (an explicit chunk loop with
signed indices defeated vectorization and ran 3x slower). Reductions keep
per-chunk partials of ``numopt._jit.CHUNK`` elements, summed in order, so their
results do not depend on the thread count. Scalars must already have the arrays' dtype (a Python float is a
float64 in Numba and would promote a float32 loop); per-step scalars such as
bias corrections are computed by the caller in float64.
"""
