"""Small models whose candidate features are labelled by construction (DESIGN.md, "Testbeds")."""

from featurecontrols.testbeds.base import GroundTruth, Testbed
from featurecontrols.testbeds.modular_addition import (
    ModularAdditionConfig,
    ModularAdditionRun,
    ModularAdditionTransformer,
    load_modular_addition,
    modular_addition_testbed,
    train_modular_addition,
)
from featurecontrols.testbeds.planted_residual import (
    PlantedResidualConfig,
    PlantedResidualMLP,
    train_planted_residual,
)
from featurecontrols.testbeds.sparse_parity import SparseParityConfig, SparseParityMLP, train_sparse_parity

__all__ = [
    "GroundTruth",
    "ModularAdditionConfig",
    "ModularAdditionRun",
    "ModularAdditionTransformer",
    "PlantedResidualConfig",
    "PlantedResidualMLP",
    "SparseParityConfig",
    "SparseParityMLP",
    "Testbed",
    "load_modular_addition",
    "modular_addition_testbed",
    "train_modular_addition",
    "train_planted_residual",
    "train_sparse_parity",
]
