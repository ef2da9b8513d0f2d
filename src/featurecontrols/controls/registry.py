"""Every control by name, per contract: what configs, the CLI and the benchmarks look controls up in.

A new control is one file in the folder of its contract (``controls/label``, ``input``, ``weight``,
``causal``, ``dictionary``) and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from featurecontrols.controls.base import CausalControl
from featurecontrols.controls.causal.counterfactual_patching import CounterfactualPatching
from featurecontrols.controls.causal.directional_ablation import DirectionalAblation
from featurecontrols.controls.causal.dual_interchange import DualInterchange
from featurecontrols.controls.causal.dual_interchange_readoff import DualInterchangeReadoff
from featurecontrols.controls.causal.erasure import Erasure
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.causal.latent_ablation_readoff import LatentAblationReadoff
from featurecontrols.controls.causal.latent_group_ablation import LatentGroupAblation
from featurecontrols.controls.causal.latent_group_ablation_readoff import LatentGroupAblationReadoff
from featurecontrols.controls.causal.latent_insertion import LatentInsertion
from featurecontrols.controls.causal.latent_resample_ablation import LatentResampleAblation
from featurecontrols.controls.causal.resample_ablation import ResampleAblation
from featurecontrols.controls.dictionary.frozen_baselines import FrozenDecoder, FrozenEncoder
from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures
from featurecontrols.controls.input.random_inputs import RandomInputs
from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.weight.moment_matched_weights import MomentMatchedWeights
from featurecontrols.controls.weight.noised_weights import NoisedWeights
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.shuffled_weights import ShuffledWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights

LABEL_CONTROLS = {"shuffled labels": ShuffledLabels, "control task": ControlTask}
INPUT_CONTROLS = {"random inputs": RandomInputs, "planted sparse features": PlantedSparseFeatures}
DICTIONARY_BASELINES = {"frozen decoder": FrozenDecoder, "frozen encoder": FrozenEncoder}
WEIGHT_CONTROLS = {
    "reinitialised": ReinitialisedWeights,
    "spectrum-matched": SpectrumMatchedWeights,
    "moment-matched": MomentMatchedWeights,
    "shuffled": ShuffledWeights,
    "noised": NoisedWeights,
}
CAUSAL_CONTROLS: dict[str, Callable[..., CausalControl]] = {
    "directional ablation": DirectionalAblation,
    "resample ablation": ResampleAblation,
    "dual interchange": DualInterchange,
    "dual interchange, matched variance": partial(DualInterchange, steering_null="matched variance"),
    "dual interchange, output read-off": DualInterchangeReadoff,
    "counterfactual patching": CounterfactualPatching,
    "erasure": Erasure,
    "latent ablation": LatentAblation,
    "latent ablation, matched variance": partial(LatentAblation, null="matched variance"),
    "latent ablation, output read-off": LatentAblationReadoff,
    "latent group ablation": LatentGroupAblation,
    "latent group ablation, output read-off": LatentGroupAblationReadoff,
    "latent insertion": LatentInsertion,
    "latent insertion, matched variance": partial(LatentInsertion, null="matched variance"),
    "latent resample ablation": LatentResampleAblation,
    "latent resample ablation, matched variance": partial(LatentResampleAblation, null="matched variance"),
}
