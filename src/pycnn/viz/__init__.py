"""Visualisation (``pc.viz``): saliency maps, filters, feature maps, top-activating patches,
training curves and confusion matrices.

``saliency``, ``activations`` and ``top_activating_patches`` need only NumPy; the ``plot_*``
functions import matplotlib when called (``pip install pycnn[viz]``) and return the Figure.
"""
from __future__ import annotations

from .plots import plot_confusion_matrix, plot_feature_maps, plot_filters, plot_history
from .saliency import activations, saliency, top_activating_patches

__all__ = [
    "saliency", "activations", "top_activating_patches",
    "plot_filters", "plot_feature_maps", "plot_history", "plot_confusion_matrix",
]
