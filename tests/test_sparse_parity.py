from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity


def test_sparse_parity_solves_and_ground_truth_holds() -> None:
    testbed = train_sparse_parity(SparseParityConfig())
    assert testbed.checks["accuracy"] > 0.99
    assert testbed.checks["flip_rate_support_min"] > 0.99
    assert testbed.checks["flip_rate_other_max"] < 0.01
