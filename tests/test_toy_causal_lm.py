"""The toy causal LM (GPT-2-style, 8,295 words, trained in-process) judged end to end through
``featurecontrols run``: topic and negated are model features at each layer's last token, the filler's
identity a dataset feature; and the pieces: the language, equal-length batches, last-token outputs."""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

from featurecontrols.adapters.huggingface import HuggingFaceCausalLM
from featurecontrols.apps import cli
from featurecontrols.apps.run_config import RunConfig, run
from featurecontrols.errors import FeatureControlsError
from featurecontrols.testbeds import toy_language
from featurecontrols.testbeds.text_tasks import TextTask, encode_causal, make_task
from featurecontrols.testbeds.toy_causal_lm import RECORD, ToyLMConfig, save_toy_lm, word_tokenizer


def test_the_language_has_8k_words_and_counterfactuals_toggle_one_variable() -> None:
    words = toy_language.vocabulary()
    assert len(words) == len(set(words)) == 8295
    sentences, labels, counterfactuals = toy_language.sample(400, seed=3)
    assert {len(s) for s in sentences} == {11}
    assert all(abs(sum(v) / 400 - 0.5) < 0.1 for v in labels.values())
    for i, s in enumerate(sentences):
        assert (s[-1] == "um") == bool(labels["filler_um"][i])
        assert any(w in toy_language.NEGATIONS for w in s) == bool(labels["negated"][i])
        assert s[0][1] == "ab"[labels["topic"][i]]
        for feature, flipped in counterfactuals.items():
            changed = [j for j, (a, b) in enumerate(zip(s, flipped[i], strict=True)) if a != b]
            expected = {"filler_um": 1, "negated": 1, "topic": 10 - labels["negated"][i]}[feature]
            assert len(changed) == expected, (feature, s, flipped[i])
    assert toy_language.sample(5, seed=3) == toy_language.sample(5, seed=3)


def test_causal_batches_are_unpadded_and_labels_follow_rows() -> None:
    task = make_task("sentences", 60, seed=0)  # lengths vary, with the counterfactuals' too
    tokenizer = _word_tokenizer_of(task)
    batches, labels, changed = encode_causal(task, tokenizer, batch_size=8, counterfactuals=True)
    assert changed is not None and len({b["input_ids"].shape[1] for b in batches}) > 1
    assert all(bool(b["attention_mask"].all()) and b["input_ids"].shape[0] <= 8 for b in batches)
    texts = [task.sentences, *task.counterfactuals.values()]  # one id per word with this tokenizer
    order = sorted(range(60), key=lambda i: tuple(len(t[i]) for t in texts))
    assert sum(b["input_ids"].shape[0] for b in batches) == 60
    assert labels["negated"].tolist() == [task.sentence_labels["negated"][i] for i in order]
    rows = torch.cat([b["input_ids"][:, -1] for b in batches])  # the last token of every row
    assert rows.tolist() == [tokenizer.convert_tokens_to_ids(task.sentences[i][-1]) for i in order]
    for feature, feature_batches in changed.items():  # counterfactual row j is that of sentence row j
        ids = [row.tolist() for fb in feature_batches for row in fb["input_ids"]]
        assert ids == [tokenizer.convert_tokens_to_ids(task.counterfactuals[feature][i]) for i in order]
        assert all(bool(fb["attention_mask"].all()) for fb in feature_batches), feature
    with pytest.raises(FeatureControlsError, match="labelled per token"):
        encode_causal(make_task("tokens", 4, 0), tokenizer, 8)


def _word_tokenizer_of(task: TextTask) -> Any:
    """One id per word of the task's sentences and counterfactuals."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in [task.sentences, *task.counterfactuals.values()] for s in t for w in s})
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", *words])}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<unk>")


@pytest.fixture(scope="module")
def toy_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_toy_lm(tmp_path_factory.mktemp("toy") / "model", ToyLMConfig())


def test_toy_lm_learns_the_answer_and_ignores_the_filler(toy_lm: Path) -> None:
    record = json.loads((toy_lm / RECORD).read_text(encoding="utf-8"))
    checks = record["checks"]
    assert checks["answer_cell_accuracy"] >= 0.95
    assert checks["counterfactual_kl_topic"] > 1.0 and checks["counterfactual_kl_negated"] > 1.0
    assert checks["counterfactual_kl_filler_um"] < 1e-3
    assert save_toy_lm(toy_lm, ToyLMConfig()) == toy_lm  # kept, not retrained
    with pytest.raises(FeatureControlsError, match="another recipe"):
        save_toy_lm(toy_lm, ToyLMConfig(steps=1))


def test_last_token_outputs_are_the_last_position_of_all(toy_lm: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(toy_lm, local_files_only=True).eval()
    batches, _, _ = encode_causal(make_task("toy_language", 6, 1), word_tokenizer(), 6)
    every = HuggingFaceCausalLM(model).outputs(batches[0])
    last = HuggingFaceCausalLM(model, last_token=True).outputs(batches[0])
    assert every.shape[1] == 11 and last.shape == (6, 1, every.shape[2])
    torch.testing.assert_close(last[:, 0], every[:, -1], rtol=1e-4, atol=1e-4)


def test_featurecontrols_run_judges_the_toy_lm_on_all_three_axes(
    toy_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "toy.toml"
    config.write_text(
        f'model = "{toy_lm}"\ndataset = "toy_language"\nn_sentences = 300\n'
        'sites = ["blocks.0.hook_resid_pre[-1]", "blocks.1.hook_resid_post[-1]"]\n'
        'controls = ["reinitialised"]\nseeds = 2\nn_shuffles = 500\nn_random_directions = 500\n'
        f'used_examples = 48\ncounterfactuals = true\nout = "{tmp_path / "out"}"\n',
        encoding="utf-8",
    )
    assert cli.main(["run", str(config), "--quiet"]) == 0
    document = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    last = document["verdicts"]["blocks.1.hook_resid_post[-1]"]
    assert last == {"topic": "model feature", "negated": "model feature", "filler_um": "dataset feature"}
    embedding = document["verdicts"]["blocks.0.hook_resid_pre[-1]"]  # the filler's own embedding
    assert embedding == {"topic": "not found", "negated": "not found", "filler_um": "dataset feature"}
    run_ = document["run"]
    axes = {c["name"]: c["axes"] for c in run_["candidates"] if c["site"].startswith("blocks.1")}
    assert {axes[f][a]["status"] for f in ("topic", "negated") for a in ("learned", "used")} == {"yes"}
    assert axes["filler_um"]["learned"]["status"] == axes["filler_um"]["used"]["status"] == "no"
    patching = {  # the counterfactual sequences, patched in at the last token, agree
        f: [e for e in axes[f]["used"]["evidence"] if e["control"].startswith("counterfactual")] for f in axes
    }
    assert all(len(v) == 1 for v in patching.values())
    assert patching["topic"][0]["p_adjusted"] < 0.05 and patching["negated"][0]["p_adjusted"] < 0.05
    assert patching["filler_um"][0]["ci_high"] < patching["filler_um"][0]["margin"]
    methods = Counter(run_["settings"]["weight_controls"][0]["methods"])
    assert all(m.startswith("_init_weights") for m in methods), methods  # GPT-2's own initialiser
    assert "model feature" in capsys.readouterr().out


def test_causal_lm_sites_need_a_position(toy_lm: Path, tmp_path: Path) -> None:
    config = RunConfig(model=str(toy_lm), dataset="toy_language", sites=("blocks.1.hook_resid_post",))
    with pytest.raises(FeatureControlsError, match=r"hook_resid_post\[-1\]"):
        run(config, progress=False)
    tokens = RunConfig(model=str(toy_lm), dataset="tokens", level="token", out=str(tmp_path))
    with pytest.raises(FeatureControlsError, match="labelled per token"):
        run(tokens, progress=False)


def test_training_shows_every_step_to_a_callback() -> None:
    from featurecontrols.testbeds.toy_causal_lm import train_toy_lm

    seen: list[int] = []
    train_toy_lm(ToyLMConfig(steps=3, batch_size=4, n_check=8), on_step=lambda step, _: seen.append(step))
    assert seen == [0, 1, 2, 3]  # before each of the 3 updates, and after the last


def test_a_config_dictionary_on_a_causal_lm_reports_the_loss_it_recovers(
    toy_lm: Path, tmp_path: Path
) -> None:
    """``dictionary`` on a causal LM: every fit's metrics carry the next-token loss recovered, with the
    clean loss the model's own (``labels=input_ids``) averaged over the run's batches."""
    from featurecontrols.apps.run_config import prepare

    config = RunConfig(model=str(toy_lm), dataset="toy_language", n_sentences=120,
                       sites=("blocks.1.hook_resid_post[-1]",), controls=("reinitialised",), seeds=1,
                       used=False, dictionary="topk", d_sae=8, k=2, sae_epochs=2, batch_size=40,
                       control_task=False, out=str(tmp_path))  # fmt: skip
    document = run(config, progress=False)
    (fits,) = document["run"]["dictionaries"].values()
    trained = fits["trained"]
    bed = prepare(config)  # the run's own model and batches
    with torch.no_grad():
        losses = [float(bed.adapter.module(**b, labels=b["input_ids"]).loss) for b in bed.batches]
    clean = sum(losses) / len(losses)
    assert trained["loss_clean"] == pytest.approx(clean, rel=1e-5)
    assert trained["loss_ablated"] > trained["loss_clean"] and "loss_recovered" in fits["reinitialised #0"]
