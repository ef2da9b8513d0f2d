import pytest
import torch
from torch import nn

from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import LogisticProbe
from featurecontrols.measures.description_length import (
    BLOCK_FRACTIONS,
    codelength_selectivity,
    online_codelength,
)
from featurecontrols.pipeline.battery import Battery
from featurecontrols.report import to_html
from featurecontrols.testbeds.token_embeddings import token_embedding_task


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


def _token_task(exceptions: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    task = token_embedding_task(n=3000, vocab=200, d=16, exceptions=exceptions, seed=3)
    return task.activations, task.labels.float(), task.tokens


def test_codelength_evidence_separates_structure_from_a_random_function_of_the_cell() -> None:
    """Hewitt & Liang's setting, coded: a linear property of the token embeddings compresses far better
    than control tasks over the tokens; a label drawn at random per token does not."""
    X, y, tokens = _token_task(exceptions=0.0)
    structured = codelength_selectivity(LogisticProbe, X, y, ControlTask(tokens), n_controls=99, seed=0)
    evidence = structured.evidence
    assert evidence.p_value == pytest.approx(0.01)  # below every one of the 99 control tasks
    assert 0.0 < evidence.ci_low <= evidence.effect <= evidence.ci_high
    assert evidence.effect == pytest.approx(structured.selectivity_bits / 3000)
    assert evidence.axis == "learned" and evidence.control == "control task (codelength)"
    assert evidence.score < evidence.control_score and evidence.effect > 0.3  # bits per example
    assert structured.task.compression.item() > 3.0

    random_of_token = (torch.rand(200, generator=torch.Generator().manual_seed(4)) < 0.5).float()[tokens]
    memorised = codelength_selectivity(
        LogisticProbe, X, random_of_token, ControlTask(tokens), n_controls=99, seed=0
    )
    assert memorised.evidence.p_value > 0.05
    assert memorised.evidence.ci_low < 0.0 < memorised.evidence.ci_high


def test_battery_puts_the_codelength_on_the_learned_axis() -> None:
    X, y, tokens = _token_task(exceptions=0.0)
    model = nn.Sequential(nn.Embedding(200, 16))
    with torch.no_grad():  # the per-token mean activation: the testbed's embedding, less the noise
        counts = torch.bincount(tokens, minlength=200).clamp(min=1)[:, None]
        model[0].weight.copy_(X.new_zeros(200, 16).index_add_(0, tokens, X) / counts)
    battery = Battery(
        weight_controls=[ReinitialisedWeights()], n_weight_seeds=2, n_shuffles=200, run_used=False,
        codelength_probe=LogisticProbe(), n_bootstrap=200, progress=False,
    )  # fmt: skip
    result = battery.run(model, tokens, "0", {"property": y}, cells=tokens)
    learned = result.candidates[0].axes["learned"]
    controls = [e.control for e in learned.evidence]
    assert "control task (codelength)" in controls and "control task" in controls
    assert result.settings.n_tests_corrected == 4  # decodable, reinitialised, control task, codelength
    assert result.settings.n_shuffles == 200
    assert result.settings.codelength_probe == "LogisticProbe()"
    codelength = learned.evidence[controls.index("control task (codelength)")]
    assert codelength.p_adjusted <= 0.05 and codelength.effect > 0
    assert "codelength" in to_html(result)
