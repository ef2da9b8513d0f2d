"""Latent ablation measured along the latent's own direction at the outputs.

The removal is latent ablation's (``latent_ablation.py``): on the examples where latent j fires,
h'_i = h_i - z_j(h_i) d_j. The measure, the null and the margin differ:

- measure: how far each example's outputs move the way the outputs follow the latent, in standard
  deviations of the outputs, t_i = sign(m_i) (f'(x_i) - f(x_i)) . u / sqrt(mean_k ||f(x_k) - mean f||^2),
  with u the unit covariance of the clean outputs with the latent's code summed over the example's
  rows, v_i, and m_i = -v_i the move of that code (``OutputChange.read_off``); the statistic is the
  mean over the examples where it fires;
- null: the same removals (the same codes, d_j's Euclidean norm) along B random directions of the
  data's span orthogonal to the rows' covariance with z_j, so their coordinate is uncorrelated with
  the latent's code (``latent_rows.py``, ``null="uncorrelated"``): moves that carry nothing of it;
- margin: ``Margins.output_read_off``, 0.1 output standard deviations;
- "not used": the outputs' whole move under the removal, ||f' - f|| in their standard deviations,
  bounded below the margin (``NullScores.size``): a latent read without the outputs following it on
  average moves them, and is never called unused for that.

H0, "the outputs do not follow latent j": where the outputs depend on the site only through
directions uncorrelated with z_j, removing z_j d_j moves them by 0 along u and the null's moves are
symmetric about 0, so p is large: valid and conservative there (not uniform). It assumes the
latent is in the data, its code covarying with the site along what it writes: for a code independent
of the data, u is noise along R c_j (a linear readout R), which the null's directions are kept off
and the latent's direction is not, so the real spreads wider than the null (README, "The used axis").

Why: a site the outputs read in every direction (a transcoder's write into a narrow stream; toy
models of superposition's bottleneck) gives the plain ablation no answer, since a random direction
of the span moved as far moves the outputs as much as the latent (the transcoder testbed: 0/7
used, README). Along the latent's own output direction, a latent the model reads moves the outputs
by what they follow of it; a direction that carries nothing of it moves them there only through
interference; a latent nothing reads moves nothing. Like the labelled read-off
(``dual_interchange_readoff.py``), it does not ask whether the latent is read *more than other
directions*: in a model that reads everything, every latent that is there is used.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from featurecontrols.axes.evidence import Unit
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.causal.latent_rows import LatentNull, LatentRows
from featurecontrols.measures.output_change import OutputChange


class LatentAblationReadoff(LatentAblation):
    """Causal control: remove each latent's contribution z_j d_j and measure the outputs along their
    covariance with the latent, against removals along directions uncorrelated with it (module
    docstring). Runs on dictionary latents only; next-token logits are read off in the square roots
    of their distributions (``OutputChange``)."""

    title = "latent ablation in the output read-off vs random directions"
    stream = "latent ablation read-off"
    metric = "output move along the latent's output direction when the latent is removed"
    unit: ClassVar[Unit] = "output read-off"

    def __init__(self, null: LatentNull = "uncorrelated") -> None:
        super().__init__(null)

    def measure(self, rows: LatentRows, code: Tensor, kept: Tensor, moves: Tensor) -> OutputChange:
        """The outputs' move along their covariance with the latent's code per example, signed by
        the code's move there."""
        return latent_read_off(rows, code, kept, moves)


def latent_read_off(rows: LatentRows, code: Tensor, kept: Tensor, moves: Tensor) -> OutputChange:
    """The read-off of latent j at the outputs: ``code`` (n_rows,) and its ``moves`` on the kept
    rows (k,), or a group's (n_rows, g) and (k, g) with latent j first, summed per example."""
    if code.ndim > 1:
        code, moves = code[:, 0], moves[:, 0]
    return rows.outputs.read_off(rows.per_example(code), rows.per_example(moves, kept))
