"""featurecontrols: did the model learn this feature, or is it structure in the data?

The usual entry point is :class:`Battery`: a model (any ``nn.Module``, or an adapter of
``featurecontrols.adapters``), inputs, sites and candidates (labels by name, or :class:`Labelled`,
:class:`Direction` and :class:`Latents`) in; a :class:`RunResult` with a verdict per candidate out.
Every piece (adapters, finders, controls, axes, measures, report) can also be used on its own.
"""

from featurecontrols.adapters import TorchModel, adapt
from featurecontrols.adapters.sites import Site, read_activations
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import RidgeProbe
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.candidates import Direction, Labelled, Latents
from featurecontrols.pipeline.results import RunResult

__version__ = "0.1.0"

__all__ = [
    "Battery",
    "Direction",
    "FeatureControlsError",
    "Labelled",
    "Latents",
    "ReinitialisedWeights",
    "RidgeProbe",
    "RunResult",
    "ShuffledLabels",
    "Site",
    "SpectrumMatchedWeights",
    "TorchModel",
    "adapt",
    "read_activations",
]
