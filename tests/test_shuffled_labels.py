import torch

from featurecontrols.controls.label.shuffled_labels import ShuffledLabels


def test_each_column_is_a_permutation_keeping_the_marginals() -> None:
    y = (torch.rand(200, generator=torch.Generator().manual_seed(0)) < 0.05).float()  # sparse
    null = ShuffledLabels().null_labels(y, 300, torch.Generator().manual_seed(1))
    assert null.shape == (200, 300)
    assert bool((null.sum(0) == y.sum()).all())
    assert len({tuple(c.tolist()) for c in null.T}) > 250  # the shuffles differ


def test_group_shuffles_stay_inside_their_group_and_are_reproducible() -> None:
    groups = torch.tensor([3, 3, 1, 1, 1, 3, 7, 7, 7, 7])
    y = torch.arange(10.0)
    control = ShuffledLabels(groups=groups)
    null = control.null_labels(y, 50, torch.Generator().manual_seed(2))
    for g in groups.unique():
        rows = groups == g
        for column in null.T:
            assert sorted(column[rows].tolist()) == sorted(y[rows].tolist())
    again = control.null_labels(y, 50, torch.Generator().manual_seed(2))
    assert torch.equal(null, again)
    assert not torch.equal(null[:, 0], y) or not torch.equal(null[:, 1], y)
