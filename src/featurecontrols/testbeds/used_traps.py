"""Trap testbeds for the used axis: linear models built by hand, each to break one way of testing use.

Every model is ``inputs -> embed -> hidden (the site) -> readout``: binary variables x in {-1, +1}^m
plus Gaussian noise inputs z, embedded as h = A x + N z (d dimensions), read out linearly. Which
variables the output reads is set in the weights, so the ground truth holds by construction; each
builder checks it on the data, independently of any control (``checks``): flipping an unread
variable changes no output (``unread_output_change`` 0), flipping a read one does. Under a weight
control every variable stays decodable (a random embedding keeps them apart), so the used axis is
the one that decides.

- ``pass_through``: 4 read and 4 unread variables; the read ones are embedded 5 times larger, so
  they dominate the activation variance (``read_variance_share``), as in a model that amplifies what
  it reads. Nulls drawn from the activation covariance land on the read directions, so a read
  variable looks no more used than noise (DESIGN.md, "used").
- ``overlapping``: a read variable a and an unread one b along directions with cosine 0.8; the
  output reads a through its dual vector (orthogonal to b's direction), as a model in superposition
  does. An intervention along b's probe (read-off) vector moves a's read-out too.
- ``dormant``: a read variable, an unread variable u, and a direction w the data never visits
  (``dormant_variance`` 0) that the output reads. The candidate direction v = (u's direction + w) /
  sqrt 2 reads u perfectly; intervening along v moves the activations along w, off the data, and
  changes the output (the interpretability illusion of Makelov et al. 2023): a dataset feature that
  an intervention makes look used.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from featurecontrols.axes.evidence import GroundTruth
from featurecontrols.pipeline.candidates import Direction
from featurecontrols.seeding import generator
from featurecontrols.testbeds.base import Testbed

N_EXAMPLES = 4096
NOISE = 0.1


class LinearSiteModel(nn.Module):
    """h = A x + N z at ``hidden``, output R h: the inputs are [x (m), z (d)] per row."""

    def __init__(self, embed: Tensor, noise: Tensor, readout: Tensor) -> None:
        super().__init__()
        self.m = embed.shape[1]
        self.embed = nn.Linear(embed.shape[1], embed.shape[0], bias=False)
        self.noise = nn.Linear(noise.shape[1], noise.shape[0], bias=False)
        self.hidden = nn.Identity()
        self.readout = nn.Linear(readout.shape[1], readout.shape[0], bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(embed)
            self.noise.weight.copy_(noise)
            self.readout.weight.copy_(readout)

    def forward(self, inputs: Tensor) -> Tensor:
        x, z = inputs[:, : self.m], inputs[:, self.m :]
        h: Tensor = self.hidden(self.embed(x) + self.noise(z))
        out: Tensor = self.readout(h)
        return out


def _inputs(m: int, d: int, seed: int) -> Tensor:
    g = generator(seed, "used traps", "inputs")
    x = torch.randint(0, 2, (N_EXAMPLES, m), generator=g).float() * 2 - 1
    return torch.cat([x, torch.randn(N_EXAMPLES, d, generator=g)], dim=1)


def _orthonormal(d: int, k: int, seed: int, key: str) -> Tensor:
    q: Tensor = torch.linalg.qr(torch.randn(d, k, generator=generator(seed, "used traps", key)))[0]
    return q  # (d, k) orthonormal columns


def _testbed(
    name: str, model: LinearSiteModel, inputs: Tensor, truth: dict[str, GroundTruth], checks: dict[str, float]
) -> Testbed:
    m = model.m
    features = {f"x_{i}": (inputs[:, i] > 0).long() for i in range(m) if f"x_{i}" in truth}
    counterfactuals = {}
    for i in range(m):
        flipped = inputs.clone()
        flipped[:, i] = -flipped[:, i]
        counterfactuals[f"x_{i}"] = flipped
    with torch.no_grad():
        out = model(inputs)
        change = {i: float((model(counterfactuals[f"x_{i}"]) - out).abs().max()) for i in range(m)}
    unread = [i for i in range(m) if truth.get(f"x_{i}") == "dataset feature"]
    read = [i for i in range(m) if truth.get(f"x_{i}") == "model feature"]
    checks |= {
        "unread_output_change": max(change[i] for i in unread),
        "read_output_change_min": min(change[i] for i in read),
    }
    return Testbed(
        name=name,
        model=model,
        inputs=inputs,
        site="hidden",
        features=features,
        ground_truth={k: truth[k] for k in features},
        description=(__doc__ or "")
        .split("- ``" + name + "``:")[-1]
        .split("\n- ")[0]
        .split("\n\n")[0]
        .strip(),
        checks=checks,
        counterfactuals={k: v for k, v in counterfactuals.items() if k in features},
    )


def pass_through(seed: int = 0, d: int = 16) -> Testbed:
    """Trap (a): read variables dominate the activation variance (module docstring)."""
    m = 8
    Q = _orthonormal(d, m, seed, "pass through")
    scale = torch.tensor([5.0] * 4 + [1.0] * 4)
    embed = Q * scale
    readout = Q[:, :4].T / 5.0  # output k reads variable k
    model = LinearSiteModel(embed, NOISE * torch.eye(d), readout)
    inputs = _inputs(m, d, seed)
    with torch.no_grad():
        h = model.embed(inputs[:, :m]) + model.noise(inputs[:, m:])
    centred = h - h.mean(dim=0)
    read_share = float((centred @ Q[:, :4]).square().sum() / centred.square().sum())
    truth: dict[str, GroundTruth] = {
        f"x_{i}": "model feature" if i < 4 else "dataset feature" for i in range(m)
    }
    return _testbed("pass_through", model, inputs, truth, {"read_variance_share": read_share})


def overlapping(seed: int = 0, d: int = 16) -> Testbed:
    """Trap (b): an unread variable's direction overlaps a read one's, cosine 0.8 (module docstring)."""
    Q = _orthonormal(d, 4, seed, "overlapping")
    d_a, d_b = Q[:, 0], 0.8 * Q[:, 0] + 0.6 * Q[:, 1]  # unit vectors, cosine 0.8
    embed = torch.stack([d_a, d_b, Q[:, 2], Q[:, 3]], dim=1)  # x_2 read, x_3 unread: orthogonal controls
    dual = torch.linalg.pinv(embed[:, :2]).T  # (d, 2): dual[:, 0] reads x_a and is orthogonal to d_b
    readout = torch.stack([dual[:, 0], Q[:, 2]])
    model = LinearSiteModel(embed, NOISE * torch.eye(d), readout)
    truth: dict[str, GroundTruth] = {
        "x_0": "model feature", "x_1": "dataset feature", "x_2": "model feature", "x_3": "dataset feature",
    }  # fmt: skip
    return _testbed("overlapping", model, _inputs(4, d, seed), truth, {"cosine_a_b": float(d_a @ d_b)})


def dormant(seed: int = 0, d: int = 16) -> Testbed:
    """Trap (c): the dormant-direction illusion (module docstring); the illusory candidate direction,
    a dataset feature by construction, is the testbed's ``extra``."""
    Q = _orthonormal(d, 4, seed, "dormant")
    read, unread, w = Q[:, 0], Q[:, 1], Q[:, 3]
    embed = torch.stack([read, unread, Q[:, 2]], dim=1)  # x_2: another unread variable
    span = torch.eye(d) - torch.outer(w, w)  # the noise never moves along w either
    readout = torch.stack([read, 5.0 * w])  # the output reads x_0 and, strongly, the dormant direction
    model = LinearSiteModel(embed, NOISE * span, readout)
    inputs = _inputs(3, d, seed)
    with torch.no_grad():
        h = model.embed(inputs[:, :3]) + model.noise(inputs[:, 3:])
    truth: dict[str, GroundTruth] = {
        "x_0": "model feature",
        "x_1": "dataset feature",
        "x_2": "dataset feature",
    }
    bed = _testbed("dormant", model, inputs, truth, {"dormant_variance": float((h @ w).var())})
    illusion = Direction(
        "x_1 + dormant",
        (unread + w) / 2**0.5,
        "hidden",
        labels=bed.features["x_1"],
        ground_truth="dataset feature",
    )
    return replace(bed, extra=(illusion,))
