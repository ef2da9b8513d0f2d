"""The used axis' output measure: squared distances for values, KL of next-token distributions for
language-model logits, checked against the formulas computed directly in float64."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from featurecontrols.adapters import TorchModel
from featurecontrols.adapters.interventions import ProjectOut
from featurecontrols.adapters.sites import Site
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import OutputChange

VOCAB, WIDTH, POSITIONS = 97, 8, 5


class TinyLM(nn.Module):
    """Tokens (rows, positions) -> logits (rows, positions, vocab), each position on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.mix = nn.Linear(WIDTH, WIDTH)
        self.unembed = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.unembed(torch.tanh(self.mix(self.embed(tokens))))


@pytest.fixture(scope="module")
def lm() -> tuple[TorchModel, list[Tensor]]:
    torch.manual_seed(0)
    model = TinyLM().eval()
    batches = list(torch.randint(0, VOCAB, (24, POSITIONS)).split(8))
    return TorchModel(model, output_kind="logits"), batches


def _log_probs(adapter: TorchModel, batches: list[Tensor], intervention: ProjectOut | None) -> Tensor:
    with torch.no_grad():
        if intervention is None:
            return torch.cat([adapter.module(b) for b in batches]).double().log_softmax(-1)
        with adapter.intervening([(Site("mix"), intervention)]):
            return torch.cat([adapter.module(b) for b in batches]).double().log_softmax(-1)


def test_logits_change_is_the_kl_relative_to_the_information_radius(
    lm: tuple[TorchModel, list[Tensor]],
) -> None:
    adapter, batches = lm
    direction = torch.randn(WIDTH, generator=torch.Generator().manual_seed(1))
    ablate = ProjectOut(direction)
    clean, moved = _log_probs(adapter, batches, None), _log_probs(adapter, batches, ablate)
    p = clean.exp()
    p_bar = p.reshape(-1, VOCAB).mean(dim=0)
    radius = -(p_bar * p_bar.log()).sum() + (p * clean).sum(-1).mean()  # H(pbar) - mean H(p)
    expected = (p * (clean - moved)).sum(-1).mean(-1) / radius

    outputs = OutputChange(adapter, batches, Site("mix"))
    assert outputs.reference == []  # logits are never kept
    assert outputs.spread == pytest.approx(float(radius), rel=1e-4)
    torch.testing.assert_close(outputs.under(ablate), expected, rtol=1e-3, atol=1e-6)
    assert float(outputs.under(lambda h: h).abs().max()) < 1e-9  # no change, no divergence


def test_stacking_and_pass_sizes_do_not_change_the_numbers(lm: tuple[TorchModel, list[Tensor]]) -> None:
    adapter, batches = lm
    g = torch.Generator().manual_seed(2)
    ablations = [ProjectOut(torch.randn(WIDTH, generator=g)) for _ in range(5)]
    one_at_a_time = torch.stack([OutputChange(adapter, batches, Site("mix")).under(a) for a in ablations])
    for elements in (1, 10**9):
        outputs = OutputChange(adapter, batches, Site("mix"), elements_per_pass=elements)
        stacked = outputs.under_stacked([[a] * len(batches) for a in ablations])
        torch.testing.assert_close(stacked, one_at_a_time, rtol=1e-4, atol=1e-7)


def _ablated_values(adapter: TorchModel, batches: list[Tensor]) -> tuple[ProjectOut, Tensor, Tensor, Tensor]:
    """An ablation at ``mix``, the clean and the ablated outputs (rows, o) in float64, and the clean
    outputs' spread mean_j ||f_j - mean f||^2, computed directly."""
    ablate = ProjectOut(torch.randn(WIDTH, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        clean = torch.cat([adapter.module(b) for b in batches]).double().flatten(1)
        with adapter.intervening([(Site("mix"), ablate)]):
            moved = torch.cat([adapter.module(b) for b in batches]).double().flatten(1)
    return ablate, clean, moved, (clean - clean.mean(0)).square().sum(1).mean()


def test_values_change_is_the_squared_distance_relative_to_the_spread(
    lm: tuple[TorchModel, list[Tensor]],
) -> None:
    adapter, batches = TorchModel(lm[0].module), lm[1]  # values: logits flattened
    ablate, clean, moved, spread = _ablated_values(adapter, batches)
    expected = (moved - clean).square().sum(1) / spread
    torch.testing.assert_close(OutputChange(adapter, batches, Site("mix")).under(ablate), expected)


def test_bad_output_kinds_are_refused(lm: tuple[TorchModel, list[Tensor]]) -> None:
    with pytest.raises(FeatureControlsError, match="output_kind"):
        TorchModel(lm[0].module, output_kind="probabilities")  # type: ignore[arg-type]
    images = TorchModel(nn.Conv2d(1, 2, 3), output_kind="logits")
    with pytest.raises(FeatureControlsError, match=r"\(rows, positions, vocab\)"):
        OutputChange(images, [torch.randn(2, 1, 5, 5)], Site(""))


def test_read_off_is_the_signed_move_along_the_class_difference_in_output_stds(
    lm: tuple[TorchModel, list[Tensor]],
) -> None:
    """For a label: change_i = s_i (f' - f) . u / sqrt(spread), u the unit class-mean difference of
    the clean outputs, s_i = -1 for class 1 and +1 for class 0."""
    adapter, batches = TorchModel(lm[0].module), lm[1]
    labels = torch.randint(0, 2, (24,), generator=torch.Generator().manual_seed(5))
    ablate, clean, moved, spread = _ablated_values(adapter, batches)
    difference = clean[labels == 1].mean(0) - clean[labels == 0].mean(0)
    signs = torch.where(labels == 1, -1.0, 1.0).double()
    expected = signs * ((moved - clean) @ (difference / difference.norm())) / spread.sqrt()
    measure = OutputChange(adapter, batches, Site("mix"))
    torch.testing.assert_close(measure.read_off(labels.double(), signs).under(ablate), expected)
    torch.testing.assert_close(measure.under(ablate), (moved - clean).square().sum(1) / spread)  # unchanged


def test_read_off_of_a_code_follows_the_outputs_covariance_with_it_on_any_subset(
    lm: tuple[TorchModel, list[Tensor]],
) -> None:
    """For a code v: u = unit sum_i (v_i - mean v)(f_i - mean f), signed by each example's move (0
    where it does not move); restricted to some examples, the same numbers on those examples."""
    adapter, batches = TorchModel(lm[0].module), lm[1]
    draw = torch.Generator().manual_seed(6)
    code = torch.relu(torch.randn(24, generator=draw, dtype=torch.float64))
    moves = -code  # removed: the move is -v_i, 0 where the code is 0
    ablate, clean, moved, spread = _ablated_values(adapter, batches)
    u = torch.nn.functional.normalize((code - code.mean()) @ (clean - clean.mean(0)), dim=0)
    expected = moves.sign() * ((moved - clean) @ u) / spread.sqrt()
    measure = OutputChange(adapter, batches, Site("mix")).read_off(code, moves)
    torch.testing.assert_close(measure.under(ablate), expected)
    some = torch.tensor([1, 4, 9, 17, 23])
    torch.testing.assert_close(measure.restricted(some).under(ablate), expected[some])


def test_read_off_of_logits_is_taken_in_the_square_roots_of_the_distributions(
    lm: tuple[TorchModel, list[Tensor]],
) -> None:
    """For logits, f(x_i) = sqrt(p_i) over positions and vocabulary: the read-off, its size (the plain
    distance in that space) and a subset, against the formula in float64."""
    adapter, batches = lm
    code = torch.relu(torch.randn(24, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    ablate = ProjectOut(torch.randn(WIDTH, generator=torch.Generator().manual_seed(3)))
    clean = _log_probs(adapter, batches, None).mul(0.5).exp().flatten(1)  # sqrt(p), (rows, positions * vocab)
    moved = _log_probs(adapter, batches, ablate).mul(0.5).exp().flatten(1)
    spread = (clean - clean.mean(0)).square().sum(1).mean()
    u = torch.nn.functional.normalize((code - code.mean()) @ clean, dim=0)
    expected = -((moved - clean) @ u) / spread.sqrt() * (code > 0)  # the code's move is -v_i

    measure = OutputChange(adapter, batches, Site("mix")).read_off(code, -code)
    assert measure.spread == pytest.approx(float(spread.sqrt()), rel=1e-5)
    torch.testing.assert_close(measure.under(ablate), expected, rtol=1e-3, atol=1e-6)
    size = measure.size([ablate] * len(batches))
    assert size is not None
    torch.testing.assert_close(size, (moved - clean).norm(dim=1) / spread.sqrt(), rtol=1e-3, atol=1e-5)
    some = torch.tensor([0, 5, 11, 20])
    torch.testing.assert_close(measure.restricted(some).under(ablate), expected[some], rtol=1e-3, atol=1e-6)
    shift = 0.01 * torch.randn(WIDTH, generator=torch.Generator().manual_seed(8))

    def nudge(h: Tensor) -> Tensor:
        return h + shift

    kl = OutputChange(adapter, batches, Site("mix"))
    size = measure.size([nudge] * len(batches))
    assert size is not None  # a small change: ||sqrt(p') - sqrt(p)||^2 ~ KL(p || p') / 2 per position
    torch.testing.assert_close(
        size.square() * measure.spread**2, kl.under(nudge) * kl.spread * POSITIONS / 2, rtol=0.02, atol=1e-9
    )
    ragged = OutputChange(adapter, [batches[0], batches[1][:, :3]], Site("mix"))
    with pytest.raises(FeatureControlsError, match="one number of positions in every batch"):
        ragged.read_off(code[:16], -code[:16])


def test_read_off_needs_one_value_per_example(lm: tuple[TorchModel, list[Tensor]]) -> None:
    adapter, batches = lm
    values = OutputChange(TorchModel(adapter.module), batches, Site("mix"))
    with pytest.raises(FeatureControlsError, match="value and its move on each of the 24"):
        values.read_off(torch.arange(10) % 2, torch.ones(10))
    with pytest.raises(FeatureControlsError, match="value and its move on each of the 24"):
        values.read_off(torch.ones(24), torch.ones(23))
    constant = values.read_off(torch.ones(24), torch.ones(24))  # no direction: nothing moves along it
    assert bool((constant.under(lambda h: h + 1.0) == 0).all())
