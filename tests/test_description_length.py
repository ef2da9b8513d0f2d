import pytest
import torch

from featurecontrols.controls.control_task import ControlTask
from featurecontrols.controls.shuffled_labels import ShuffledLabels
from featurecontrols.description_length import BLOCK_FRACTIONS, codelength_selectivity, online_codelength
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import LogisticProbe


def _data(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 10, generator=g)
    return X, (X[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).float()


def test_codelength_of_a_linear_label_compresses_and_of_noise_does_not() -> None:
    X, y = _data()
    noise = (torch.rand(2000, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    code = online_codelength(LogisticProbe, X, torch.stack([y, noise], dim=1))
    assert code.block_ends[-1] == 2000 and len(code.block_ends) == len(BLOCK_FRACTIONS)
    assert code.block_bits.shape == (len(code.block_ends), 2)
    assert torch.allclose(code.online_bits, code.block_bits.sum(dim=0))
    assert float(code.compression[0]) > 2.0
    assert 0.8 < float(code.compression[1]) < 1.05  # noise: no better than the uniform code
    assert code.uniform_bits == 2000.0


def test_codelength_selectivity_against_shuffled_labels() -> None:
    X, y = _data(seed=1)
    result = codelength_selectivity(LogisticProbe, X, y, ShuffledLabels(), n_controls=3, seed=0)
    assert result.selectivity_bits > 500
    assert result.compression_gain > 1.0
    assert result.control.online_bits.shape == (3,)


def test_a_memorisable_control_task_is_coded_almost_as_well_as_the_task_by_a_lookup() -> None:
    """With one-hot cells as activations, a control task is as learnable as any function of the cell."""
    g = torch.Generator().manual_seed(2)
    cells = torch.randint(0, 20, (2000,), generator=g)
    X = torch.nn.functional.one_hot(cells, 20).float()
    y = (cells % 2).float()
    result = codelength_selectivity(LogisticProbe, X, y, ControlTask(cells), n_controls=3, seed=0)
    assert abs(result.selectivity_bits) < 0.1 * result.task.online_bits.item() + 50


def test_bad_inputs_raise_clear_errors() -> None:
    X, y = _data(10)
    with pytest.raises(FeatureControlsError, match="fewer than two blocks"):
        online_codelength(LogisticProbe, X, y, fractions=(1.0,))
    with pytest.raises(FeatureControlsError, match="single class"):
        online_codelength(LogisticProbe, X, torch.zeros(10))
