"""Visualisation (``pc.viz``): saliency maps, filters, feature maps, top-activating patches,
training curves, confusion matrices, and ``report``: all of them for one input on one HTML page.

``saliency``, ``activations`` and ``top_activating_patches`` need only NumPy; the ``plot_*``
functions import matplotlib when called (``pip install pycnn[viz]``) and return the Figure;
``report`` needs matplotlib too.
"""
from __future__ import annotations

from .plots import plot_confusion_matrix, plot_feature_maps, plot_filters, plot_history
from .report import report
from .saliency import activations, saliency, top_activating_patches

__all__ = [
    "saliency", "activations", "top_activating_patches",
    "plot_filters", "plot_feature_maps", "plot_history", "plot_confusion_matrix", "report",
]
