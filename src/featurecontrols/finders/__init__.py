"""Finders: methods that find candidate features in activations (probes first)."""

from featurecontrols.finders.base import Probe
from featurecontrols.finders.ridge_probe import RidgeProbe

__all__ = ["Probe", "RidgeProbe"]
