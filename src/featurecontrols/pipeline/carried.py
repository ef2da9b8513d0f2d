"""Work a series of runs carries from one checkpoint to the next: what does not depend on it.

A weight control's copy may not read the trained weights at all: a re-initialised copy is drawn by
the library's initialiser from its own seed, whatever the checkpoint (unless a parameter is kept, or
falls back to the moments of the trained tensor). Everything computed from such a copy alone is then
the same at every checkpoint: its activations and spectra (``ReadActivations``), the probes fitted on
them (``ProbeFit``), the dictionaries fitted on them and their metrics (``FitDictionary``,
``DictionaryMetrics``). :class:`CarriedWork` decides it exactly, never by the control's name: at each
checkpoint every copy is drawn and hashed (``params.tensor_digest`` of its state dict), and a copy's
work is reused only when the hash equals the one it was computed from. So a series with reuse gives
bit for bit the numbers of one without (a test checks it).

What depends on the checkpoint is never carried: the trained model's activations, the label nulls
fitted on them, the used axis' interventions, the copies of controls that read the trained weights
(spectrum-matched, moment-matched, shuffled, noised).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor

from featurecontrols.params import tensor_digest
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.jobs import Job, Output, ProbeFit, ReadActivations
from featurecontrols.pipeline.latent_jobs import DictionaryMetrics, FitDictionary
from featurecontrols.pipeline.plan import Condition

_OWN = (ReadActivations, ProbeFit, FitDictionary, DictionaryMetrics)


def copy_condition(job: Job) -> Condition | None:
    """The weight-control copy whose activations alone (with the run's inputs, labels, split and
    seed) determine ``job``'s output, or None."""
    condition = getattr(job, "condition", None)
    if isinstance(job, _OWN) and isinstance(condition, Condition) and condition.kind == "weights":
        return condition
    return None


@dataclass
class CarriedWork:
    """The copies' digests, their jobs' outputs and their activations, from the last run; ``reused``
    counts the jobs each run took from it."""

    digests: dict[str, str] = field(default_factory=dict)
    outputs: dict[Job, Output] = field(default_factory=dict)
    activations: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    reused: list[int] = field(default_factory=list)

    def take(self, ctx: RunContext) -> dict[Job, Output]:
        """The carried outputs of every copy of ``ctx`` that is bit-identical to the one they came
        from (its activations go into the context too); the other copies' are dropped."""
        same = set()
        for condition in (c for c in ctx.plan.conditions if c.kind == "weights"):
            state = ctx.randomised(condition).adapter.weights.state_dict()
            digest = hashlib.sha256("".join(k + tensor_digest(v) for k, v in state.items()).encode())
            if self.digests.get(condition.key) == digest.hexdigest():
                same.add(condition.key)
            self.digests[condition.key] = digest.hexdigest()
        given = {}
        for job, output in self.outputs.items():
            of = copy_condition(job)
            if of is not None and of.key in same:
                given[job] = Output(output.tensors, output.meta | {"seconds": "0"})  # no work this run
        ctx.preload({k: v for k, v in self.activations.items() if k[0] in same})
        self.reused.append(len(given))
        return given

    def keep(self, ctx: RunContext, outputs: Mapping[Job, Output]) -> None:
        """Keep every copy's work of this run for the next one."""
        self.outputs = {job: out for job, out in outputs.items() if copy_condition(job) is not None}
        keys = {c.key for c in ctx.plan.conditions if c.kind == "weights"}
        self.activations = ctx.held(keys)
