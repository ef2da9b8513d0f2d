"""Transcoders: a sparse code that reads one site and writes another (Dunefsky et al. 2024).

A transcoder replaces a component (an MLP, say) by a sparse dictionary of its computation: it reads
the component's input x (d_in) and writes an approximation of its output y (d_out),

    pre   = (s_x x - mu) W_enc^T + b_enc          mu: the mean of s_x x on the first batch (fixed)
    z     = act(pre)                              any of the SAE's activations (relu, topk, ...)
    y_hat = (z W_dec + b_dec) / s_y,  every row of W_dec of unit norm,

trained on ||s_y y - (z W_dec + b_dec)||^2 / d_out plus the activation's penalty and the aux-k loss,
exactly as ``finders/sparse_autoencoder.py`` trains an SAE (y = x there), with s_x and s_y the two
sites' scales (E||s x||^2 = d on the first batch). Latent j reads x through W_enc[j] and writes
d_j = W_dec[j] / s_y into the output site, so removing it there, y' = y - z_j(x) d_j, is its
ablation (``controls/causal/latent_ablation.py``). Frozen decoder and encoder baselines apply as to
an SAE (``frozen=``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.sparse_autoencoder import SparseCoder, unit_rows
from featurecontrols.validation import check_activations


class Transcoder(SparseCoder):
    """A transcoder (module docstring); parameters as :class:`SparseCoder`'s. Fitted state adds
    ``b_in_`` (mu), ``target_scale_`` (s_y) and ``n_features_out_`` (d_out)."""

    def fit(self, X: Tensor, Y: Tensor) -> Transcoder:
        """Train to write Y (n, d_out) from X (n, d_in), row i of Y the output for row i of X."""
        X = check_activations(X, "the transcoder's inputs")
        Y = check_activations(Y, "the transcoder's targets")
        if X.shape[0] != Y.shape[0]:
            raise FeatureControlsError(
                f"the transcoder got {X.shape[0]} input rows and {Y.shape[0]} target rows",
                "give one target row (the written site's activation) per input row",
            )
        self.n_features_out_ = int(Y.shape[1])
        self._train(self._batches(torch.cat([X.float(), Y.float()], dim=1)), int(X.shape[1]))
        return self

    def _initialise(self, x: Tensor, y: Tensor) -> None:
        self.target_scale_ = self._scale_of(y)
        super()._initialise(x, y)
        self.b_in_ = (x.float().mean(0) * self.scale_).to(self.device)

    def _initial_encoder(self, decoder: Tensor, d_in: int, rng: torch.Generator) -> Tensor:
        """Random unit rows of the input's width (the decoder's live in another space)."""
        return unit_rows(self.d_sae, d_in, rng)

    def _target_scale(self) -> float:
        return self.target_scale_

    def _input_bias(self) -> Tensor:
        return self.b_in_
