"""featurecontrols: did the model learn this feature, or is it structure in the data?

The usual entry point is :class:`Battery`; every piece (sites, finders, controls, statistics,
report) can also be used on its own from its module.
"""

from featurecontrols.adapters.sites import Site, read_activations
from featurecontrols.axes.evidence import RunResult
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import RidgeProbe
from featurecontrols.pipeline.battery import Battery

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
