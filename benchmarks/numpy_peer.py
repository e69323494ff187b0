"""The NumPy peer of the benchmarks ships in the package now (pycnn/bench/numpy_peer.py); this name
stays for checkouts' scripts and tests."""
from pycnn.bench.numpy_peer import *  # noqa: F401,F403
from pycnn.bench.numpy_peer import lenet_step_outputs, lenet_train_step  # noqa: F401
