"""SAELens's folder format, both ways: :func:`save_saelens` writes a fitted :class:`SparseAutoencoder`
as a folder SAELens loads (``SAE.load_from_disk``); :func:`load_saelens` reads a folder SAELens saved
into one, without SAELens installed and without unpickling anything.

The folder holds ``sae_weights.safetensors`` (``W_enc`` (d_in, m), ``b_enc`` (m,), ``W_dec`` (m, d_in),
``b_dec`` (d_in,), and ``threshold`` (m,) for ``jumprelu``) and ``cfg.json`` (written last: a folder
without it is incomplete). Our SAE works on inputs scaled by s (``scale_``); SAELens's on raw inputs,
so s is folded into the weights exactly:

    pre = (s x - b_dec) W_enc^T + b_enc = (x - b_dec / s) (s W_enc)^T + b_enc
    x_hat = (z W_dec + b_dec) / s = z (W_dec / s) + b_dec / s

Architectures: our TopK is SAELens's ``topk`` (the top k of the pre-activations, ReLU'd), ReLU is
``standard``, JumpReLU is ``jumprelu``, and BatchTopK at inference (z = pre * [pre > theta],
theta >= 0) is ``jumprelu`` with every threshold theta (cfg.json's metadata says it was a BatchTopK,
so that it is refitted as one). SAELens's JumpReLU is z = ReLU(pre) [pre > theta_j], which is ours,
pre [pre > max(theta_j, 0)], so thresholds below 0 are read as 0. An SAE saved with
``apply_b_dec_to_input = false`` (pre = x W_enc + b_enc) has b_dec W_enc folded into b_enc; input
normalisation other than ``"none"`` is refused.

A :class:`~featurecontrols.finders.Transcoder` is written as SAELens's ``transcoder`` (ReLU) or
``jumprelu_transcoder`` (``d_out`` in cfg.json, ``W_dec`` (m, d_out), no b_dec on the input): with
input scale s_x, output scale s_y and input mean mu,

    pre = (s_x x - mu) W_enc^T + b_enc = x (s_x W_enc)^T + (b_enc - mu W_enc^T)
    y_hat = (z W_dec + b_dec) / s_y

SAELens has no TopK transcoder, so ours are refused. :func:`load_saelens` reads a ``transcoder`` or
``jumprelu_transcoder`` folder into a fitted :class:`~featurecontrols.finders.Transcoder` on raw
units (s_x = s_y = 1, mu = 0: pre = x W_enc + b_enc, y_hat = z W_dec + b_dec, as SAELens computes
them); skip transcoders (``W_skip``, a dense path beside the latents) are refused.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save
from torch import Tensor

from featurecontrols import atomic
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.sparse_autoencoder import Activation, SparseAutoencoder
from featurecontrols.finders.transcoder import Transcoder

ARCHITECTURES: dict[Activation, str] = {
    "topk": "topk", "relu": "standard", "batchtopk": "jumprelu", "jumprelu": "jumprelu"
}  # fmt: skip
TRANSCODER_ARCHITECTURES: dict[Activation, str] = {"relu": "transcoder", "jumprelu": "jumprelu_transcoder"}
THRESHOLDED = ("jumprelu", "jumprelu_transcoder")  # folders with one threshold per latent
WEIGHTS, CONFIG = "sae_weights.safetensors", "cfg.json"


def save_saelens(sae: SparseAutoencoder | Transcoder, folder: str | os.PathLike[str]) -> Path:
    """Write ``sae`` (fitted; an SAE or a transcoder) to ``folder`` in SAELens's format; returns it."""
    if not hasattr(sae, "decoder_"):
        raise FeatureControlsError(f"the {type(sae).__name__} is not fitted", "call .fit(...) first")
    transcoder = isinstance(sae, Transcoder)
    names = TRANSCODER_ARCHITECTURES if transcoder else ARCHITECTURES
    if sae.activation not in names:
        raise FeatureControlsError(
            f"a {sae.activation!r} {type(sae).__name__} has no SAELens counterpart",
            f"export one of {sorted(names)}",
        )
    lowest = float(sae.threshold_.min())
    if sae.activation == "batchtopk" and lowest < 0:
        raise FeatureControlsError(
            f"a BatchTopK threshold below 0 ({lowest:g}) keeps negative codes, which SAELens's "
            "JumpReLU (a ReLU times a step) cannot",
            "export a TopK or ReLU SAE, or refit",
        )
    tensors = _saelens_tensors(sae)
    metadata: dict[str, object] = {
        "exported_by": "featurecontrols",
        "featurecontrols_activation": sae.activation,
    }
    if sae.activation == "batchtopk":  # SAELens's jumprelu has no k: the recipe goes in the metadata
        metadata["featurecontrols_k"] = int(sae.k)
    cfg: dict[str, object] = {
        "architecture": names[sae.activation], "d_in": int(sae.n_features_in_),
        "d_sae": int(sae.d_sae), "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": not transcoder,
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": metadata,
    }  # fmt: skip
    if isinstance(sae, Transcoder):
        cfg["d_out"] = int(sae.n_features_out_)
    if sae.activation == "topk":
        cfg["k"] = int(sae.k)
    out = Path(folder)
    atomic.write_bytes(out / WEIGHTS, save(tensors))
    atomic.write_json(out / CONFIG, cfg)
    return out


def _saelens_tensors(sae: SparseAutoencoder | Transcoder) -> dict[str, Tensor]:
    """The weights on raw inputs and outputs (module docstring): s folded in; a transcoder's input
    mean folded into b_enc."""
    s_in, s_out = float(sae.scale_), float(getattr(sae, "target_scale_", sae.scale_))
    with torch.no_grad():
        b_enc = sae.b_enc_ - (sae.b_in_ @ sae.encoder_.T if isinstance(sae, Transcoder) else 0.0)
        tensors = {
            "W_enc": (s_in * sae.encoder_.T).float().cpu().contiguous(),
            "b_enc": b_enc.float().cpu().clone(),
            "W_dec": (sae.decoder_ / s_out).float().cpu().contiguous(),
            "b_dec": (sae.b_dec_ / s_out).float().cpu().contiguous(),
        }
    if sae.activation in ("batchtopk", "jumprelu"):
        tensors["threshold"] = sae.threshold_.float().cpu().contiguous()
    return tensors


def load_saelens(folder: str | os.PathLike[str]) -> SparseAutoencoder | Transcoder:
    """A fitted :class:`SparseAutoencoder` (or :class:`Transcoder`, from a transcoder folder) from a
    folder in SAELens's format (module docstring): the same codes and outputs as SAELens's
    ``SAE.load_from_disk``, on raw inputs (``scale_`` 1). Its parameters (``d_sae``, ``activation``,
    ``k``) are the recipe a control refits."""
    folder = Path(folder)
    cfg = _config(folder)
    tensors = _weights(folder, cfg)
    activation, k = _recipe(cfg)
    transcoder = cfg["architecture"] in TRANSCODER_ARCHITECTURES.values()
    kind = Transcoder if transcoder else SparseAutoencoder
    sae = kind(d_sae=cfg["d_sae"], activation=activation, k=k, normalise_input=False)
    b_enc = tensors["b_enc"]
    if not transcoder and not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + tensors["b_dec"] @ tensors["W_enc"]
    sae.n_features_in_, sae.scale_ = cfg["d_in"], 1.0
    sae.encoder_, sae.decoder_ = tensors["W_enc"].T.contiguous(), tensors["W_dec"].contiguous()
    sae.b_enc_, sae.b_dec_ = b_enc, tensors["b_dec"]
    if isinstance(sae, Transcoder):
        sae.n_features_out_, sae.target_scale_, sae.b_in_ = cfg["d_out"], 1.0, torch.zeros(cfg["d_in"])
    threshold = tensors.get("threshold", torch.zeros(cfg["d_sae"]))
    sae.threshold_ = threshold.clamp(min=0.0)
    sae.aux_k_, sae.n_tokens_, sae.loss_history_ = 0, 0, []
    sae.dead_fraction_ = math.nan
    return sae


def _recipe(cfg: dict[str, Any]) -> tuple[Activation, int]:
    """Our activation and k for the folder: a ``jumprelu`` folder we wrote from a BatchTopK SAE says
    so (and its k) in its metadata; every other ``jumprelu`` is a JumpReLU."""
    metadata = cfg.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    k = metadata.get("featurecontrols_k")
    if cfg["architecture"] == "jumprelu":
        if metadata.get("featurecontrols_activation") == "batchtopk" and isinstance(k, int) and k >= 1:
            return "batchtopk", k
        return "jumprelu", 32
    names = (
        TRANSCODER_ARCHITECTURES
        if cfg["architecture"] in TRANSCODER_ARCHITECTURES.values()
        else ARCHITECTURES
    )
    ours = next(a for a, theirs in names.items() if theirs == cfg["architecture"])
    return ours, int(cfg.get("k", 32))


def _config(folder: Path) -> dict[str, Any]:
    """The folder's cfg.json, checked."""
    path = folder / CONFIG
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeatureControlsError(
            f"no {CONFIG} in {folder}", "give the folder SAELens saved the SAE in"
        ) from None
    except json.JSONDecodeError as err:
        raise FeatureControlsError(f"{path} is not valid JSON: {err}", "save the SAE again") from None
    known = sorted({*ARCHITECTURES.values(), *TRANSCODER_ARCHITECTURES.values()})
    if not isinstance(cfg, dict) or cfg.get("architecture", "standard") not in known:
        got = cfg.get("architecture") if isinstance(cfg, dict) else cfg
        raise FeatureControlsError(
            f"{path}: architecture {got!r} is not one this loader reads", f"use one of {known}, or sae_lens"
        )
    cfg.setdefault("architecture", "standard")
    sizes = {"topk": ("k",), **dict.fromkeys(TRANSCODER_ARCHITECTURES.values(), ("d_out",))}
    for key in ("d_in", "d_sae", *sizes.get(cfg["architecture"], ())):
        if not isinstance(cfg.get(key), int) or isinstance(cfg.get(key), bool) or cfg[key] < 1:
            raise FeatureControlsError(
                f"{path}: {key} must be a positive integer, got {cfg.get(key)!r}", "fix cfg.json"
            )
    if cfg.get("normalize_activations", "none") != "none":
        raise FeatureControlsError(
            f"{path}: normalize_activations = {cfg['normalize_activations']!r} rescales inputs by a "
            "statistic of the data, which the folder does not hold",
            "load it with sae_lens.SAE.load_from_disk and pass the object as the dictionary",
        )
    return cfg


def _weights(folder: Path, cfg: dict[str, Any]) -> dict[str, Tensor]:
    """The folder's tensors (safetensors, never a pickle), shapes and values checked against ``cfg``."""
    path = folder / WEIGHTS
    if not path.is_file():
        raise FeatureControlsError(f"no {WEIGHTS} in {folder}", "save the SAE with SAELens 6 (safetensors)")
    tensors = {k: v.float() for k, v in load(path.read_bytes()).items()}
    if "W_skip" in tensors:
        raise FeatureControlsError(
            f"{path} is a skip transcoder (W_skip: a dense path beside its latents), which this loader "
            "does not read",
            "load it with sae_lens.SAE.load_from_disk, or train a transcoder without a skip connection",
        )
    d, m, out = cfg["d_in"], cfg["d_sae"], cfg.get("d_out", cfg["d_in"])
    shapes = {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, out), "b_dec": (out,)}
    if cfg["architecture"] in THRESHOLDED:
        shapes["threshold"] = (m,)
    for name, shape in shapes.items():
        got = tuple(tensors[name].shape) if name in tensors else None
        if got != shape:
            raise FeatureControlsError(
                f"{path}: {name} has shape {got}, cfg.json says {shape}", "save the SAE again"
            )
        if not bool(torch.isfinite(tensors[name]).all()):
            raise FeatureControlsError(f"{path}: {name} holds NaN or inf", "save the SAE again")
    return tensors
