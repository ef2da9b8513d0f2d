"""Finders: methods that find candidate features in activations (probes, PCA, SAEs, transcoders)."""

from featurecontrols.finders.base import Dictionary, Probe, UnsupervisedFinder
from featurecontrols.finders.logistic_probe import LogisticProbe
from featurecontrols.finders.mass_mean_probe import MassMeanProbe
from featurecontrols.finders.mlp_probe import MLPProbe, MLPRegression
from featurecontrols.finders.pca import PCA
from featurecontrols.finders.ridge_probe import RidgeProbe
from featurecontrols.finders.ridge_regression import RidgeRegression
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder
from featurecontrols.finders.transcoder import Transcoder

__all__ = [
    "PCA",
    "Dictionary",
    "LogisticProbe",
    "MLPProbe",
    "MLPRegression",
    "MassMeanProbe",
    "Probe",
    "RidgeProbe",
    "RidgeRegression",
    "SparseAutoencoder",
    "Transcoder",
    "UnsupervisedFinder",
]
