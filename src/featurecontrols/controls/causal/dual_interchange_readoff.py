"""Dual interchange measured along the feature's own difference at the outputs.

The interchange is the dual interchange's (``controls/causal/dual_interchange.py``): each example's
coordinate of feature j, c_j = r_j . h, is moved to the other class's along j's surgical write
vector. The measure and the null differ:

- measure: how far each example's outputs move towards the other class along the unit vector u of
  the clean outputs' class-mean difference, in standard deviations of the outputs,
  t_i = s_i (f'(x_i) - f(x_i)) . u / sqrt(mean_j ||f(x_j) - mean f||^2), s_i = -1 for class 1 and
  +1 for class 0 (``measures/output_change.OutputChange.read_off``; for next-token logits f is
  the square roots of the distributions, sqrt(p), the Hellinger embedding); the statistic is its mean;
- null: the same moves, as many of the data's standard deviations, along B random directions of
  the data that carry nothing of feature j: uniform in its whitened coordinates among those
  orthogonal to j's read-off there, so each moves r_j . h by 0 and its coordinate is uncorrelated
  with c_j over the data (``MatchedShifts.one_std(uncorrelated=r_j)``);
- margin: ``Margins.output_read_off``, 0.1 output standard deviations (the square root of the plain
  change's 0.01 of the outputs' variance, for a move along u);
- "not used": the outputs' whole move, ||f' - f|| in their standard deviations, bounded below the
  margin (``NullScores.size``): a feature the outputs use without following it on average (read
  through an XOR, so that its classes do not differ at the outputs) moves them, and is never called
  unused for moving them along no class difference.

H0, "the outputs do not follow feature j": where the outputs depend on the site only through
coordinates uncorrelated with c_j, the interchange moves them by 0 and the null's moves are
symmetric about 0, so p >= 1/2 or so: the test is valid and conservative there (not uniform).

Why: where the outputs read every direction of the site (a bottleneck, as in toy models of
superposition, Elhage et al. 2022), moving a random direction as far moves the outputs as much as
moving the feature, so the plain change against random directions cannot tell them apart (TMS:
effects -0.055 to +0.014, 0/30 used, README). Along the feature's own output difference a feature
the model reads moves the outputs by its class difference there; a direction that carries nothing of
it moves them only through interference; a feature nothing reads moves nothing. It needs the
feature's classes to differ at the outputs: a feature used to compute something its classes do not
shift on average (sparse parity's input bits) has no read-off there. Unlike the plain dual
interchange it does not ask whether the feature is read *more than other directions*: in a model
that reads everything, every feature that is there is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.dual_interchange import DualInterchange
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import OutputChange


class DualInterchangeReadoff(DualInterchange):
    """Causal control: the dual interchange, measured along the feature's own difference at the
    outputs, against moves uncorrelated with the feature (module docstring). Labelled targets only."""

    metric = "output move along the feature's class difference under dual interchange"
    unit: ClassVar[Unit] = "output read-off"
    null_uncorrelated: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()

    @property
    def name(self) -> str:
        """The control's name in the evidence."""
        return "dual interchange in the output read-off vs uncorrelated random directions"

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """Per labelled target, the per-example move along its output difference (n,) against the
        null's means (n_null,)."""
        unlabelled = [t.name for t in targets if t.labels is None]
        if unlabelled:
            raise FeatureControlsError(
                f"the output read-off needs labels, and {unlabelled[:3]} have none",
                "judge directions and latents without labels with 'dual interchange' or 'latent ablation'",
            )
        return super().scores(at, targets)

    def _measure(self, outputs: OutputChange, target: CausalTarget, n: int) -> OutputChange:
        """The move along the target's class difference at the outputs, per example."""
        assert target.labels is not None
        if outputs.n != n:
            raise FeatureControlsError(
                f"the output read-off needs one site row per output example; the site has {n} rows "
                f"for {outputs.n} examples",
                "measure it at a site with one row per example, or use 'dual interchange'",
            )
        labels = target.labels[:n].double()
        return outputs.read_off(labels, 1.0 - 2.0 * labels)  # class 1 moves to class 0: sign -1
