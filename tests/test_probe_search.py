from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from featurecontrols.adapters.sites import read_activations
from featurecontrols.controls.label.control_task import bit_cells
from featurecontrols.measures.probe_search import (
    ProbeSearch,
    ProbeSpec,
    SearchResult,
    SearchSpace,
    hypervolume_2d,
    pareto_front,
)
from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity


def test_pareto_front_and_hypervolume_by_hand() -> None:
    points = [(0.0, 1.0), (0.5, 0.5), (0.6, 0.6), (1.0, 0.0), (0.5, 0.5)]
    assert pareto_front(points) == [0, 1, 3]
    # boxes to the reference (2, 2): [0,0.5]x[1,2], [0.5,1]x[0.5,2], [1,2]x[0,2]
    assert hypervolume_2d(points, (2.0, 2.0)) == pytest.approx(0.5 + 0.75 + 2.0)
    assert hypervolume_2d([(3.0, 0.0)], (2.0, 2.0)) == 0.0


def test_complexity_counts_parameters() -> None:
    assert ProbeSpec("linear").complexity(10) == 11
    assert ProbeSpec("mlp", hidden=4, depth=1).complexity(10) == 10 * 4 + 4 + 4 + 1
    assert ProbeSpec("mlp", hidden=4, depth=2, rank=2).complexity(10) == 10 * 2 + 2 * 4 + 4 + 20 + 5


def test_bit_cells_code_the_chosen_bits() -> None:
    x = torch.tensor([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]])
    assert bit_cells(x, [0, 1]).tolist() == [2, 1]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small MLPs run faster on one thread, much faster on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _memorisable_task(n_examples: int, n_bits: int) -> tuple[Tensor, Tensor, Tensor]:
    """The input site of a sparse-parity model. Cells: the code of bits 0 .. n_bits - 1 (token-like types).
    Label: x_0, flipped where bits 1 .. n_bits - 2 are all on, an exception in a few cells that a linear
    probe cannot fit and an expressive probe fits by memorising cells."""
    testbed = train_sparse_parity(SparseParityConfig(n=12, k=2, width=64, steps=300, n_examples=n_examples))
    X = read_activations(testbed.model, [testbed.inputs], ["fc:input"])["fc:input"]
    on = testbed.inputs > 0
    y = (on[:, 0] ^ on[:, 1 : n_bits - 1].all(dim=1)).long()
    return X, y, bit_cells(testbed.inputs, range(n_bits))


def _both_searches(
    n_examples: int, n_bits: int, n_trials: int, steps: tuple[int, int]
) -> tuple[SearchResult, SearchResult]:
    pytest.importorskip("optuna")
    X, y, cells = _memorisable_task(n_examples, n_bits)
    space = SearchSpace(hidden=(4, 256), steps=steps, dropout=(0.0, 0.2), weight_decay=(1e-4, 1e-1))
    plain, control = (
        ProbeSearch(objective, n_trials=n_trials, n_controls=3, space=space).fit(X, y, cells).result_
        for objective in ("accuracy", "selectivity")
    )
    # without the control the search takes the most accurate probe: an MLP that memorises cells
    assert plain.chosen.spec.kind == "mlp"
    assert plain.chosen.accuracy == max(t.accuracy for t in plain.trials) > control.chosen.accuracy
    assert plain.chosen.control_accuracy > control.chosen.control_accuracy + 0.15
    assert plain.chosen.number in plain.front_control and control.chosen.number in control.front_control
    assert 0.0 < control.hypervolume_control <= 1.0 and 0.0 < control.hypervolume_complexity <= 1.0
    return plain, control


def test_search_by_selectivity_picks_a_smaller_more_selective_probe() -> None:
    plain, control = _both_searches(600, n_bits=5, n_trials=8, steps=(100, 300))
    assert control.chosen.complexity * 4 < plain.chosen.complexity
    assert control.chosen.selectivity > plain.chosen.selectivity + 0.05


@pytest.mark.slow
def test_search_by_selectivity_on_64_cells() -> None:
    plain, control = _both_searches(1000, n_bits=6, n_trials=10, steps=(200, 500))
    assert control.chosen.complexity * 20 < plain.chosen.complexity
    assert control.chosen.selectivity > plain.chosen.selectivity + 0.2


def test_same_seed_same_search() -> None:
    pytest.importorskip("optuna")
    X, y, cells = _memorisable_task(400, n_bits=5)
    space = SearchSpace(hidden=(4, 16), steps=(20, 40))
    a, b = (ProbeSearch(n_trials=4, n_controls=2, space=space, seed=3).fit(X, y, cells).result_ for _ in "ab")
    assert a == b
    assert a.as_dict()["chosen"]["spec"]["kind"] in ("linear", "mlp")
