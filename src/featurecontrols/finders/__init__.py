"""Finders: methods that find candidate features in activations (probes, PCA, SAEs)."""

from featurecontrols.finders.base import Dictionary, Probe, UnsupervisedFinder
from featurecontrols.finders.pca import PCA
from featurecontrols.finders.ridge_probe import RidgeProbe
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder

__all__ = ["PCA", "Dictionary", "Probe", "RidgeProbe", "SparseAutoencoder", "UnsupervisedFinder"]
