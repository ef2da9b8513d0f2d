"""Planted sparse variables: a hand-built residual MLP whose dictionary latents have ground truth.

Construction
------------
The inputs are ``N_VARS`` sparse binary variables s in {0, 1}^12, each 1 with probability
``P_ACTIVE``, independently, plus Gaussian noise z. The model (width d = 32) is::

    h      = E s + sigma z            E: orthonormal columns e_i; sigma = NOISE a constant, not a weight
    a_k    = ReLU((e_a + e_b) . h - 1)  one neuron per pair (a, b) of PAIRS: AND(s_a, s_b), up to noise
    resid  = h + sum_k a_k w_k        the site; w_k orthonormal, orthogonal to every e_i
    out    = R resid                  R's rows: w_0, w_1, w_2 (the ANDs) and e_6, e_7

So the variables at ``resid`` are of three kinds, by construction:

- computed and read: ``and_01``, ``and_23``, ``and_45``. No copy of the model with random weights
  computes an AND of two given inputs, and the output reads it: model features on both axes.
- carried and read: ``s_6``, ``s_7`` reach ``resid`` through the embedding (any random embedding
  keeps them apart, so every randomised copy carries them) and the output reads them: model features
  by use, not learned.
- carried, unread: ``s_0`` to ``s_5`` (read by the ANDs' neurons before the site, never after it)
  and ``s_8`` to ``s_11``: dataset features.

Latents and their truth
-----------------------
The candidates are the latents of one ReLU + L1 SAE (``DICTIONARY``) fitted on the trained model's
``resid``. A latent's truth is that of the variable its codes match on held-out inputs (largest
|Pearson r| at least ``MATCH``); a latent matching no variable has no truth (counted as unmatched).
Each axis is judged on the latents it is meant to decide (``Testbed.axis_truth``): learned is yes
for the ANDs' latents only (every other variable is carried by any random copy), used for the
latents of read variables (the ANDs, s_6 and s_7).
The SAE's settings were chosen among five (TopK, BatchTopK, ReLU at three L1 strengths) by how well
its latents recover the planted variables on seed 0, before any control ran. ``JUMPRELU`` is the
same testbed's second dictionary (bench name ``sparse_latents_jumprelu``): a JumpReLU SAE, its
settings chosen the same way among twelve (L0 weight 0.003-0.3, learning rate 1e-3 to 3e-2, 40 or 120
epochs; the thresholds need many steps to rise from their start, see ``SparseAutoencoder``).

``TRANSCODER`` is a third dictionary (bench name ``sparse_latents_transcoder``): a JumpReLU
transcoder of the AND neurons, reading their input h (site ``neurons:input``) and writing their output
sum_k a_k w_k (site ``write``). What that component writes is the three ANDs, so its latents are
matched to the ANDs only: each is computed and read (a model feature), and a latent matching none is
unmatched; this variant tests the power to find what a component computes, not the false-positive
rate (it has no dataset-feature latents by construction). Its settings were chosen among eleven
(ReLU + L1 at four strengths, TopK k = 1 and 2, JumpReLU; with and without input normalisation; two
learning rates) by recovery of the ANDs on seed 0 before any control ran: this one matched each AND
at r = 1.00 with one latent and left the other five dead; the best with input normalisation (TopK
k = 1) matched them at 0.92-0.94, the ReLU ones split them over several latents.

Independent verification (no control involved), stored in ``checks``: the AND neurons' correlation
with the true ANDs (``and_neuron_r_min``), the readout's weight on every unread direction
(``unread_readout_max``, 0 up to rounding), the variables' best latent matches (``variable_match_min``)
and the number of matched and unmatched latents.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from featurecontrols.axes.evidence import GroundTruth
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder
from featurecontrols.finders.transcoder import Transcoder
from featurecontrols.measures.latent_matching import best_matches
from featurecontrols.params import clone
from featurecontrols.pipeline.candidates import Latents
from featurecontrols.seeding import generator
from featurecontrols.testbeds.base import Testbed

N_VARS = 12
WIDTH = 32
P_ACTIVE = 0.15
NOISE = 0.05
N_EXAMPLES = 16384
PAIRS = ((0, 1), (2, 3), (4, 5))
READ_INPUTS = (6, 7)
MATCH = 0.9
DICTIONARY = SparseAutoencoder(
    d_sae=16, activation="relu", l1_coefficient=0.1, n_epochs=40, batch_size=256, seed=0
)
JUMPRELU = SparseAutoencoder(
    d_sae=16, activation="jumprelu", l0_coefficient=0.1, lr=1e-2, n_epochs=120, batch_size=256, seed=0
)
TRANSCODER = Transcoder(
    d_sae=8, activation="jumprelu", l0_coefficient=0.01, lr=1e-2, n_epochs=40, batch_size=256,
    aux_k=0, normalise_input=False, seed=0,
)  # fmt: skip


class SparseVariablesModel(nn.Module):
    """The model of the module docstring; each input row is [s (N_VARS), z (WIDTH)]."""

    def __init__(self, embed: Tensor, writes: Tensor) -> None:
        super().__init__()
        self.embed = nn.Linear(N_VARS, WIDTH, bias=False)
        self.neurons = nn.Linear(WIDTH, len(PAIRS))
        self.write = nn.Linear(len(PAIRS), WIDTH, bias=False)
        self.resid = nn.Identity()
        self.readout = nn.Linear(WIDTH, len(PAIRS) + len(READ_INPUTS), bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(embed)
            self.neurons.weight.copy_(torch.stack([embed[:, a] + embed[:, b] for a, b in PAIRS]))
            self.neurons.bias.fill_(-1.0)
            self.write.weight.copy_(writes)
            self.readout.weight.copy_(torch.cat([writes.T, embed[:, list(READ_INPUTS)].T]))

    def forward(self, inputs: Tensor) -> Tensor:
        out: Tensor = self.readout(self.inside(inputs)[2])
        return out

    def inside(self, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The neurons' input h, the AND neurons' values (n, len(PAIRS)) and the site ``resid`` (n, WIDTH)."""
        h = self.embed(inputs[:, :N_VARS]) + NOISE * inputs[:, N_VARS:]
        neurons = torch.relu(self.neurons(h))
        resid: Tensor = self.resid(h + self.write(neurons))
        return h, neurons, resid


def variables(inputs: Tensor) -> dict[str, Tensor]:
    """Every planted variable per example: s_i, then the ANDs, as float 0/1 columns."""
    s = inputs[:, :N_VARS]
    out = {f"s_{i}": s[:, i] for i in range(N_VARS)}
    return out | {f"and_{a}{b}": s[:, a] * s[:, b] for a, b in PAIRS}


def truth_of(variable: str) -> GroundTruth:
    """Model feature for the ANDs and the read inputs, dataset feature for every other input."""
    read = variable.startswith("and_") or variable in {f"s_{i}" for i in READ_INPUTS}
    return "model feature" if read else "dataset feature"


def sparse_latents(seed: int = 0, dictionary: SparseAutoencoder | Transcoder = DICTIONARY) -> Testbed:
    """The testbed for ``seed``: the model, its inputs, and the latents of ``dictionary`` (a recipe,
    fitted here with the testbed's seed): an SAE's on ``resid``, a transcoder's of the AND neurons."""
    g = generator(seed, "sparse latents")
    q = torch.linalg.qr(torch.randn(WIDTH, N_VARS + len(PAIRS), generator=g))[0]
    model = SparseVariablesModel(q[:, :N_VARS], q[:, N_VARS:])
    s = (torch.rand(N_EXAMPLES, N_VARS, generator=g) < P_ACTIVE).float()
    inputs = torch.cat([s, torch.randn(N_EXAMPLES, WIDTH, generator=g)], dim=1)
    with torch.no_grad():
        h, neurons, resid = model.inside(inputs)
        written = model.write(neurons)
    planted = variables(inputs)
    if isinstance(dictionary, Transcoder):  # the component writes the ANDs, nothing else
        planted = {name: v for name, v in planted.items() if name.startswith("and_")}
    fit_rows = N_EXAMPLES * 3 // 4
    transcoder = isinstance(dictionary, Transcoder)
    reads = h if transcoder else resid
    recipe = clone(dictionary).set_params(seed=seed)
    fitted = (
        recipe.fit(h[:fit_rows], written[:fit_rows])
        if isinstance(recipe, Transcoder)
        else recipe.fit(resid[:fit_rows])
    )
    codes = fitted.encode(reads[fit_rows:]).detach()
    columns = torch.stack(list(planted.values()), dim=1)[fit_rows:]
    match = best_matches(codes, columns)
    names = list(planted)
    pairs = zip(match.value.tolist(), match.partner.tolist(), strict=True)
    matched = {j: names[k] for j, (r, k) in enumerate(pairs) if r >= MATCH}
    ands = torch.stack([planted[f"and_{a}{b}"] for a, b in PAIRS], dim=1)
    unread = [i for i in range(N_VARS) if i not in READ_INPUTS]
    checks = {
        "and_neuron_r_min": min(
            float(torch.corrcoef(torch.stack([neurons[:, k], ands[:, k]]))[0, 1]) for k in range(len(PAIRS))
        ),
        "unread_readout_max": float((model.readout.weight.detach() @ q[:, unread]).abs().max()),
        "variable_match_min": float(best_matches(columns, codes).value.min()),
        "matched_latents": float(len(matched)),
        "unmatched_latents": float(dictionary.d_sae - len(matched)),
    }
    truth = {j: truth_of(v) for j, v in matched.items()}
    site, writes = ("neurons:input", "write") if transcoder else ("resid", None)
    latents = Latents(
        "sae", site, finder=clone(dictionary), dictionary=fitted, ground_truth=truth, writes=writes
    )
    return Testbed(
        name=_name(dictionary),
        model=model,
        inputs=inputs,
        site=site,
        features={},
        ground_truth={},
        description=(__doc__ or "").split("Construction\n------------\n")[1].split("\n\n")[0],
        checks=checks,
        extra=(latents,),
        axis_truth={
            f"sae/{j}": {"learned": v.startswith("and_"), "used": truth_of(v) == "model feature"}
            for j, v in matched.items()
        },
    )


def _name(dictionary: SparseAutoencoder | Transcoder) -> str:
    if isinstance(dictionary, Transcoder):
        return "sparse_latents_transcoder"
    return "sparse_latents" if dictionary is DICTIONARY else f"sparse_latents_{dictionary.activation}"
