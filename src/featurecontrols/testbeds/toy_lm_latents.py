"""Dictionary latents of the toy causal LM, with ground truth from the language's generator.

Construction
------------
The toy LM of ``testbeds/toy_causal_lm.py`` (trained under the testbed's seed) reads ``N_SEQUENCES``
held-out sequences of ``testbeds/toy_language.py``, each ending at its filler (where the answer is
predicted). One SAE recipe (``DICTIONARY``, fitted under the testbed's seed on the first 3/4 of the
sequences) is fitted at three sites:

- ``blocks.1.hook_resid_post[-1]`` (candidate ``resid``), the residual stream the answer is read from;
- ``hook_embed[-1]`` (candidate ``embed``), the filler's own token embedding (``uh`` or ``um``);
- ``hook_embed[-2]`` (candidate ``embed_prev``), the embedding of the word before the filler (the
  last content slot: a content word, or a negation word when that slot holds the negation).

A latent's truth is that of the generator's variable its codes match on the held-out quarter (largest
|Pearson r| at least ``MATCH``) among its site's variables (``VARIABLES``); a latent matching none
has no truth. At ``resid`` and ``embed`` those are ``topic``, ``negated``, ``filler_um`` and the
four (topic, negated) cells ``cell_{t}{n}`` (1 where topic = t and negated = n); at ``embed_prev``
it is ``negation_prev`` (the word before the filler is a negation word), the only variable whose
truth there the generator sets: that word's topic is carried by nine other words too, so whether
the model reads it from this one is not set by construction.

- ``topic``, ``negated`` and the cells are **model features**, learned and used: the answer's
  distribution is a function of the cell (so a model that predicts it reads them), and none is in the
  last position's input: the model computes them from the marker, the content words and the negation
  word by attention. Measured on seed 0 before any control ran: a logistic probe on copies of the LM
  with every weight redrawn decodes topic at 0.48-0.50 and negated at 0.50-0.56 held-out accuracy
  (chance) at ``blocks.0/1.hook_resid_post[-1]``.
- ``filler_um`` is a **dataset feature**, neither learned nor used: it is the last token itself, so
  every copy of the model carries it (the same probe decodes it at 1.00 in trained and redrawn copies),
  and no next word depends on it (counterfactual KL of toggling it: ``counterfactual_kl_filler_um``
  in ``checks``, about 1e-5 nats against about 5 for topic and negated).
- ``negation_prev`` is a **model feature by use**: a token's identity, in every copy's embedding, but
  the answer depends on it (the only negation word of its sequence: removing it flips ``negated``;
  ``counterfactual_kl_negation_prev`` in ``checks``). Only its used axis is set by construction
  (``axis_truth``): whether the trained embedding groups the three negation words where a redrawn
  one does not is the model's, not the generator's.

The recipe was chosen on seed 0, before any control ran, among seven (ReLU + L1 0.03 / 0.1 / 0.3,
TopK k = 3, JumpReLU L0 0.1 at width 16; the last two also at width 8) by how well its latents
recover the variables at ``resid``: every one recovers the four cells (r about 1.0); TopK and
JumpReLU also found topic and negated (r 0.91-1.0), the ReLU ones did not. At ``resid`` no recipe
found ``filler_um`` (best r 0.02-0.04): its direction there is small (the two fillers' embeddings
have cosine 0.987), so the dataset-feature latents of this testbed are the ``embed`` ones.

Independent verification (no control involved), stored in ``checks``: the LM's own checks (answer
cell accuracy, counterfactual KL per variable), and per site the number of matched and unmatched
latents and the best match of each variable found.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from featurecontrols.adapters.huggingface import HuggingFaceCausalLM
from featurecontrols.axes.evidence import AxisName, GroundTruth
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder
from featurecontrols.measures.latent_matching import best_matches
from featurecontrols.params import clone
from featurecontrols.pipeline.candidates import Latents
from featurecontrols.testbeds import toy_language
from featurecontrols.testbeds.base import Testbed
from featurecontrols.testbeds.text_tasks import row_contexts
from featurecontrols.testbeds.toy_causal_lm import ToyLMConfig, train_toy_lm

N_SEQUENCES = 4096
MATCH = 0.9
SITES = {"resid": "blocks.1.hook_resid_post[-1]", "embed": "hook_embed[-1]", "embed_prev": "hook_embed[-2]"}
DICTIONARY = SparseAutoencoder(
    d_sae=16, activation="jumprelu", l0_coefficient=0.1, lr=1e-2, n_epochs=40, batch_size=256, seed=0
)
BATCH = 512


LAST = (*toy_language.FEATURES, "cell_00", "cell_01", "cell_10", "cell_11")
VARIABLES = {"resid": LAST, "embed": LAST, "embed_prev": ("negation_prev",)}


def variables(sequences: list[list[str]], labels: dict[str, list[int]]) -> dict[str, Tensor]:
    """Every variable of the module docstring per sequence, as float 0/1 columns."""
    topic, negated = (torch.tensor(labels[f], dtype=torch.float32) for f in ("topic", "negated"))
    out = {f: torch.tensor(labels[f], dtype=torch.float32) for f in toy_language.FEATURES}
    for t in range(2):
        for n in range(2):
            out[f"cell_{t}{n}"] = ((topic == t) & (negated == n)).float()
    out["negation_prev"] = torch.tensor([float(toy_language.negation_before_filler(w)) for w in sequences])
    return out


def truth_of(variable: str) -> GroundTruth:
    """Dataset feature for the filler, model feature for every other variable."""
    return "dataset feature" if variable == "filler_um" else "model feature"


def axes_of(variable: str) -> dict[AxisName, bool]:
    """The axes the generator decides for a latent of ``variable`` (module docstring)."""
    if variable == "negation_prev":
        return {"used": True}
    model = truth_of(variable) == "model feature"
    return {"learned": model, "used": model}


def toy_lm_latents(seed: int = 0, dictionary: SparseAutoencoder = DICTIONARY) -> Testbed:
    """The testbed for ``seed``: the toy LM, ``N_SEQUENCES`` token-id rows (n, 11), and the latents of
    ``dictionary`` (a recipe, fitted here under the testbed's seed) at every site of ``SITES``; each
    row's context (the sequence ending in the bracketed filler) goes with it to the report."""
    lm, tokenizer, record = train_toy_lm(ToyLMConfig(seed=seed))
    sequences, labels, _ = toy_language.sample(N_SEQUENCES, seed + 3_000_017)
    ids: Tensor = tokenizer(sequences, is_split_into_words=True, return_tensors="pt")["input_ids"]
    model = HuggingFaceCausalLM(lm, last_token=True)
    sites = {name: model.resolve(site) for name, site in SITES.items()}
    batches = [ids[i : i + BATCH] for i in range(0, N_SEQUENCES, BATCH)]
    acts = model.activations(batches, list(sites.values()))
    planted = variables(sequences, labels)
    fit_rows = N_SEQUENCES * 3 // 4
    checks: dict[str, float] = dict(record["checks"])
    extra: list[Latents] = []
    axis_truth: dict[str, dict[AxisName, bool]] = {}
    for name, site in sites.items():
        fitted = clone(dictionary).set_params(seed=seed).fit(acts[str(site)][:fit_rows])
        codes = fitted.encode(acts[str(site)][fit_rows:]).detach()
        columns = torch.stack([planted[v] for v in VARIABLES[name]], dim=1)[fit_rows:]
        matched = _matched(codes, columns, list(VARIABLES[name]))
        truth = {j: truth_of(v) for j, v in matched.items()}
        extra.append(
            Latents(name, SITES[name], finder=clone(dictionary), dictionary=fitted, ground_truth=truth)
        )
        axis_truth |= {f"{name}/{j}": axes_of(v) for j, v in matched.items()}
        checks |= _site_checks(name, codes, columns, list(VARIABLES[name]), matched, dictionary.d_sae)
    return Testbed(
        name="toy_lm_latents",
        model=model,
        inputs=ids,
        site=SITES["resid"],
        features={},
        ground_truth={},
        description=(__doc__ or "").split("Construction\n------------\n")[1].split("\n\n")[0],
        checks=checks,
        extra=tuple(extra),
        axis_truth=axis_truth,
        contexts=tuple(row_contexts(_as_batches(batches), tokenizer, "last token", window=ids.shape[1])),
    )


def _matched(codes: Tensor, columns: Tensor, names: list[str]) -> dict[int, str]:
    """Latent index -> the variable its codes match (|r| at least ``MATCH``)."""
    match = best_matches(codes, columns)
    pairs = zip(match.value.tolist(), match.partner.tolist(), strict=True)
    return {j: names[k] for j, (r, k) in enumerate(pairs) if r >= MATCH}


def _site_checks(
    site: str, codes: Tensor, columns: Tensor, names: list[str], matched: dict[int, str], width: int
) -> dict[str, float]:
    """Matched and unmatched latents at ``site``, and each variable's best latent match there."""
    best = best_matches(columns, codes).value.tolist()
    return {
        f"{site}_matched_latents": float(len(matched)),
        f"{site}_unmatched_latents": float(width - len(matched)),
        **{f"{site}_match_{v}": r for v, r in zip(names, best, strict=True)},
    }


def _as_batches(batches: list[Tensor]) -> list[dict[str, Any]]:
    return [{"input_ids": b} for b in batches]
