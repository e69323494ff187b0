"""pycnn's CPU benchmark suite, shipped with the package: `python -m pycnn bench [--quick]` times
pycnn against a capable NumPy implementation (numpy_peer.py) and PyTorch CPU when it is installed,
after checking that all of them agree (run.py). A checkout's `python -m benchmarks` is a thin
command line over the same code that keeps its results in benchmarks/results/.

Importing this package imports nothing heavy.
"""
