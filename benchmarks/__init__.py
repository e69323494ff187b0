"""pycnn's benchmarks, run from a checkout.

``python -m benchmarks`` (the CPU timings: a command line over the suite the package ships,
``pycnn.bench``, also ``python -m pycnn bench``), ``python -m benchmarks.memory`` (peak resident
memory) and ``python -m benchmarks.gpu`` (GPU timings against PyTorch). Importing this package
imports nothing heavy, so that the thread environment (OMP/OPENBLAS_NUM_THREADS) can still be set
before NumPy loads its BLAS.
"""
