"""Small models whose candidate features are labelled by construction (DESIGN.md, "Testbeds")."""

from featurecontrols.testbeds.base import GroundTruth, Testbed
from featurecontrols.testbeds.planted_residual import (
    PlantedResidualConfig,
    PlantedResidualMLP,
    train_planted_residual,
)

__all__ = ["GroundTruth", "PlantedResidualConfig", "PlantedResidualMLP", "Testbed", "train_planted_residual"]
