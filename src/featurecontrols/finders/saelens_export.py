"""Export a fitted :class:`SparseAutoencoder` as a folder SAELens loads (``SAE.load_from_disk``).

The folder holds ``sae_weights.safetensors`` (``W_enc`` (d_in, m), ``b_enc`` (m,), ``W_dec`` (m, d_in),
``b_dec`` (d_in,)) and ``cfg.json`` (written last: a folder without it is incomplete). Our SAE works on
inputs scaled by s (``scale_``); SAELens's on raw inputs, so s is folded into the weights exactly:

    pre = (s x - b_dec) W_enc^T + b_enc = (x - b_dec / s) (s W_enc)^T + b_enc
    x_hat = (z W_dec + b_dec) / s = z (W_dec / s) + b_dec / s

TopK exports as SAELens's ``topk`` architecture (same k: the top k of the pre-activations, ReLU'd),
ReLU as ``standard``; BatchTopK has no exact SAELens inference counterpart and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save

from featurecontrols import atomic
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder

ARCHITECTURES = {"topk": "topk", "relu": "standard"}


def save_saelens(sae: SparseAutoencoder, folder: str | os.PathLike[str]) -> Path:
    """Write ``sae`` (fitted) to ``folder`` in SAELens's format; returns the folder."""
    if not hasattr(sae, "decoder_"):
        raise FeatureControlsError("the SAE is not fitted", "call sae.fit(activations) first")
    if sae.activation not in ARCHITECTURES:
        raise FeatureControlsError(
            f"a {sae.activation!r} SAE has no exact SAELens counterpart",
            f"export a {' or '.join(repr(a) for a in ARCHITECTURES)} SAE",
        )
    s = float(sae.scale_)
    with torch.no_grad():
        tensors = {
            "W_enc": (s * sae.encoder_.T).float().cpu().contiguous(),
            "b_enc": sae.b_enc_.float().cpu().clone(),
            "W_dec": (sae.decoder_ / s).float().cpu().contiguous(),
            "b_dec": (sae.b_dec_ / s).float().cpu().contiguous(),
        }
    cfg: dict[str, object] = {
        "architecture": ARCHITECTURES[sae.activation],
        "d_in": int(sae.n_features_in_),
        "d_sae": int(sae.d_sae),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"exported_by": "featurecontrols"},
    }
    if sae.activation == "topk":
        cfg["k"] = int(sae.k)
    out = Path(folder)
    atomic.write_bytes(out / "sae_weights.safetensors", save(tensors))
    atomic.write_json(out / "cfg.json", cfg)
    return out
