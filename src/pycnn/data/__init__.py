"""Data pipeline: in-memory datasets, a mini-batch loader, dataset readers and batch transforms.

Pure NumPy: batches are tuples of NumPy arrays, which the Trainer converts to Tensors.
"""
from . import datasets, transforms
from .loader import DataLoader, TensorDataset
from .sampler import DistributedSampler

__all__ = ["TensorDataset", "DataLoader", "DistributedSampler", "datasets", "transforms"]
