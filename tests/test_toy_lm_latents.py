"""Dictionary latents of the toy causal LM (``testbeds/toy_lm_latents.py``): their ground truth, checked
without any control, and the battery on them end to end (slow)."""

import pytest

pytest.importorskip("transformers")

from featurecontrols import Battery, Latents
from featurecontrols.pipeline.results import RunResult
from featurecontrols.testbeds import Testbed
from featurecontrols.testbeds.toy_lm_latents import N_SEQUENCES, SITES, toy_lm_latents


@pytest.fixture(scope="module")
def bed() -> Testbed:
    return toy_lm_latents(0)


def test_latents_match_the_generators_variables(bed: Testbed) -> None:
    """The LM predicts the answer cell, ignores the filler and reads the negation word before it; at
    the residual stream the SAE's latents match topic, negated and cells (never the filler), at the
    filler's embedding the filler only, at the embedding before it the negation word."""
    checks = bed.checks
    assert checks["answer_cell_accuracy"] >= 0.95 and checks["counterfactual_kl_filler_um"] < 1e-3
    assert checks["counterfactual_kl_negation_prev"] > 1.0
    assert checks["resid_match_topic"] >= 0.9 and checks["resid_match_negated"] >= 0.9
    assert checks["resid_match_filler_um"] < 0.2
    assert checks["embed_match_filler_um"] >= 0.99 and checks["embed_match_topic"] < 0.2
    assert checks["embed_prev_match_negation_prev"] >= 0.9
    resid, embed, prev = bed.extra
    assert isinstance(resid, Latents) and isinstance(embed, Latents) and isinstance(prev, Latents)
    assert [c.site for c in (resid, embed, prev)] == list(SITES.values()) == bed.sites()
    assert resid.ground_truth and set(resid.ground_truth.values()) == {"model feature"}
    assert embed.ground_truth and set(embed.ground_truth.values()) == {"dataset feature"}
    assert prev.ground_truth and set(prev.ground_truth.values()) == {"model feature"}
    assert all(bed.axis_truth[f"embed_prev/{j}"] == {"used": True} for j in prev.ground_truth)
    assert len(bed.axis_truth) == sum(len(c.ground_truth or {}) for c in (resid, embed, prev))
    assert bed.inputs.shape == (N_SEQUENCES, 11) and len(bed.contexts) == N_SEQUENCES
    assert all(c.endswith(("[uh]", "[um]")) and len(c.split()) == 11 for c in bed.contexts)


@pytest.fixture(scope="module")
def result(bed: Testbed) -> RunResult:
    """Seed 0 end to end, the settings of ``featurecontrols bench --fast --n-null 1000`` (about 7 min on
    2 cores)."""
    battery = Battery(
        seed=0, n_weight_seeds=1, n_shuffles=1000, n_random_directions=1000, n_bootstrap=100, progress=False
    )
    return battery.run(bed.model, bed.inputs, bed.sites(), bed.candidates(), contexts=list(bed.contexts))


@pytest.mark.slow
def test_the_learned_axis_tells_the_residual_latents_from_the_filler_latents(
    bed: Testbed, result: RunResult
) -> None:
    """No redrawn copy computes topic or negated, every copy carries the filler; top-activating
    inputs carry their contexts."""
    judged = {c.name: c for c in result.candidates if c.ground_truth is not None}
    assert set(judged) == set(bed.axis_truth)
    for name, c in judged.items():
        if "learned" in bed.axis_truth[name]:
            assert (c.axes["learned"].status == "yes") == bed.axis_truth[name]["learned"], name
    top = result.top_inputs[f"{SITES['embed']}/embed"]
    assert top and all(t.context == bed.contexts[t.row] for inputs in top for t in inputs)


@pytest.mark.slow
def test_the_filler_latents_are_shown_dataset_features(result: RunResult) -> None:
    """Their removal changes the next-word distribution by about 1e-5 nats: it beats the span null
    (tested against 0 it was called used, 5/5), but the used axis tests against its margin and
    bounds the change below it; with learned no, every filler latent is a dataset feature."""
    filler = [c for c in result.candidates if c.ground_truth == "dataset feature"]
    assert filler and all(c.verdict == "dataset feature" for c in filler)
    assert all(c.axes["used"].evidence[0].score_high < c.axes["used"].evidence[0].margin for c in filler)
