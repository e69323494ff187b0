"""pycnn's CPU benchmark suite: pycnn vs a capable NumPy implementation vs PyTorch CPU.

``python -m benchmarks`` (timings, see ``benchmarks/run.py``) and ``python -m benchmarks.memory``
(peak resident memory). Importing this package imports nothing heavy, so that the thread
environment (OMP/OPENBLAS_NUM_THREADS) can still be set before NumPy loads its BLAS.
"""
