"""featurecontrols: did the model learn this feature, or is it structure in the data?

The usual entry point is :class:`Battery`; every piece (sites, finders, controls, statistics,
report) can also be used on its own from its module.
"""

from featurecontrols.battery import Battery
from featurecontrols.controls.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.shuffled_labels import ShuffledLabels
from featurecontrols.controls.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.evidence import RunResult
from featurecontrols.finders import RidgeProbe
from featurecontrols.sites import Site, read_activations

__version__ = "0.1.0"

__all__ = [
    "Battery",
    "FeatureControlsError",
    "ReinitialisedWeights",
    "RidgeProbe",
    "RunResult",
    "ShuffledLabels",
    "Site",
    "SpectrumMatchedWeights",
    "read_activations",
]
