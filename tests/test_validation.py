import pytest
import torch

from featurecontrols.errors import FeatureControlsError
from featurecontrols.validation import check_activations, check_labels


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (torch.zeros(0, 4), "empty"),
        (torch.zeros(5, 4, 3), "2-D"),
        (torch.zeros(5, 4, dtype=torch.long), "floating point"),
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), r"NaN .*\(first bad row: 0\)"),
        (torch.tensor([[0.0, 1.0], [1.0, float("inf")]]), r"inf .*\(first bad row: 1\)"),
    ],
)
def test_bad_activations(X: torch.Tensor, match: str) -> None:
    with pytest.raises(FeatureControlsError, match=match) as info:
        check_activations(X)
    assert "fix:" in str(info.value)


def test_bad_labels() -> None:
    with pytest.raises(FeatureControlsError, match="3 rows but the activations have 4"):
        check_labels(torch.tensor([0, 1, 0]), 4)
    with pytest.raises(FeatureControlsError, match="'x' has 1 distinct value"):
        check_labels(torch.ones(4), 4, ["x"])
    with pytest.raises(FeatureControlsError, match="NaN"):
        check_labels(torch.tensor([0.0, float("nan"), 1.0]), 3)
    out = check_labels(torch.tensor([[-1, 5], [1, 5], [1, 7]]), 3)
    assert out.tolist() == [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]


def test_an_error_crosses_a_process_boundary_whole() -> None:
    """Worker processes (spawned benchmarks, Ray) send errors back pickled: problem and fix survive."""
    import pickle

    err = FeatureControlsError("the site has width 8", "pass activations of width 16")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is FeatureControlsError
    assert (back.problem, back.fix, str(back)) == (err.problem, err.fix, str(err))
