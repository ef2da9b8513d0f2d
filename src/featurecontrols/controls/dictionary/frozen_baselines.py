"""Frozen dictionary baselines (Korznikov et al. 2026): would a dictionary with random parts find it?

A baseline fits the latents' own finder, with the same parameters, on the trained model's own
activations, but with one matrix kept at its random initialisation:

    frozen decoder   x_hat = z W0_dec + b_dec     the directions are random; the encoder learns which
                                                  combination of them reconstructs x
    frozen encoder   z = act((x - b_dec) W0_enc^T + b_enc)   the activation pattern is a thresholded
                                                  random projection; the decoder learns what to write

Korznikov et al. found such SAEs close to fully trained ones in interpretability (0.87 vs 0.90),
sparse probing (0.69 vs 0.72) and causal editing (0.73 vs 0.72), so aggregate metrics cannot say
whether training found anything. Latent by latent the question is one of *finding*, not of the model:
a latent whose codes a baseline reproduces as well as a refit with another seed does is something a
dictionary with random directions (or a random encoder) gives anyway, so it counts on the found
(decodable) axis, matched by codes on the same held-out inputs like every latent control
(``pipeline/latent_jobs.py``). The randomised model and inputs stay the learned axis' business.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import Params, clone


class _FrozenBaseline(Params):
    """The finder with ``frozen=part``: only finders with a ``frozen`` parameter can be frozen."""

    part: ClassVar[Literal["decoder", "encoder"]]
    name: str

    def constrain(self, finder: Any) -> Any:
        if not isinstance(finder, Params) or "frozen" not in finder.get_params(deep=False):
            raise FeatureControlsError(
                f"the {self.name} baseline needs a finder with a 'frozen' parameter, got "
                f"{type(finder).__name__}",
                "use it with SparseAutoencoder latents (PCA has no training to freeze), or leave "
                "dictionary_baselines empty",
            )
        return clone(finder).set_params(frozen=self.part)


class FrozenDecoder(_FrozenBaseline):
    """Dictionary baseline: the decoder kept at its random initialisation (module docstring)."""

    part = "decoder"
    name = "frozen decoder"


class FrozenEncoder(_FrozenBaseline):
    """Dictionary baseline: the encoder kept at its random initialisation (module docstring)."""

    part = "encoder"
    name = "frozen encoder"
