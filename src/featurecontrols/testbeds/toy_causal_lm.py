"""A toy GPT-2-style causal LM trained in-process on the toy language (``testbeds/toy_language.py``).

A ``GPT2LMHeadModel`` (2 layers, width 64, 4 heads, no dropout, tied ``lm_head``) over the language's
8,295 words, with a word-level ``PreTrainedTokenizerFast`` (whitespace split, no merges), trained with
AdamW on next-word cross-entropy at every position of freshly drawn 12-word sequences (no sequence is
seen twice). :func:`save_toy_lm` writes it as a transformers folder (``config.json``,
``model.safetensors``, ``tokenizer.json``) that ``featurecontrols run`` loads like any local model;
:func:`toy_causal_lm_testbed` puts it on ``featurecontrols bench``.

Ground truth at ``blocks.{l}.hook_resid_post[-1]`` (the filler, where the answer is predicted), from
the generator alone:

- ``topic`` and ``negated`` are **model features**: the answer's distribution is a function of both
  and of nothing else, so a model that predicts it computes them from the context and reads them;
- ``filler_um`` is a **dataset feature**: the filler's identity is in its own embedding in every
  copy of the model, and no next word depends on it.

Independent check (``checks`` in ``toy_lm.json``, never from a control): held-out accuracy of the
answer cell (the argmax at the filler is one of the 8 words of the right (topic, negated) cell), and
per feature the mean KL between the next-word distributions of a sequence and of its counterfactual
(that feature toggled, all else kept): large for ``topic`` and ``negated``, about 0 for ``filler_um``;
``counterfactual_kl_negation_prev`` is the negated pairs' mean over those whose negation word is (or
goes) just before the filler (``testbeds/toy_lm_latents.py`` reads that word's embedding).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional

from featurecontrols.adapters.huggingface import HuggingFaceCausalLM
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.checkpoint import Checkpoint, state_copy
from featurecontrols.progress import track
from featurecontrols.seeding import seeded_global_rng
from featurecontrols.testbeds import toy_language
from featurecontrols.testbeds.base import GroundTruth, Testbed

RECORD = "toy_lm.json"


@dataclass(frozen=True)
class ToyLMConfig:
    """The recipe: 300 steps of 128 sequences (37 s on 2 cores) predict the answer cell of every
    held-out sequence."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    steps: int = 300
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    n_check: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_embd", "n_layer", "n_head", "steps", "batch_size", "n_check"):
            if getattr(self, name) < 1:
                raise FeatureControlsError(
                    f"{name} must be at least 1, got {getattr(self, name)}", "raise it"
                )
        if self.n_embd % self.n_head:
            raise FeatureControlsError(
                f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})", "change one"
            )


def word_tokenizer() -> Any:
    """A fast tokenizer with one id per word of the language (``<pad>`` 0, ``<unk>`` 1)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(toy_language.vocabulary())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>")  # type: ignore[no-untyped-call]


def build_model(config: ToyLMConfig) -> Any:
    """An untrained ``GPT2LMHeadModel`` of the recipe, drawn under ``config.seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2Config(
        vocab_size=len(toy_language.vocabulary()), n_positions=16, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=0, tie_word_embeddings=True,
    )  # fmt: skip
    with seeded_global_rng(config.seed, []):
        return GPT2LMHeadModel(gpt2)


def _ids(tokenizer: Any, sequences: list[list[str]]) -> Tensor:
    ids: Tensor = tokenizer(sequences, is_split_into_words=True, return_tensors="pt")["input_ids"]
    return ids


def train_toy_lm(
    config: ToyLMConfig = ToyLMConfig(),
    progress: bool = False,
    on_step: Callable[[int, Any], None] | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, record with the loss curve and the checks); ``on_step(step,
    model)`` sees the model before every update and once after the last (step = ``config.steps``)."""
    tokenizer, model = word_tokenizer(), build_model(config)
    rng = random.Random(f"toy lm training {config.seed}")
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for step in track(range(config.steps), "toy causal LM: training", enabled=progress):
        if on_step is not None:
            on_step(step, model)
        ids = _ids(tokenizer, [toy_language.draw(rng).with_answer() for _ in range(config.batch_size)])
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(loss.item())
    if on_step is not None:
        on_step(config.steps, model)
    model.eval()
    record = {
        "config": asdict(config),
        "train_seconds": time.perf_counter() - start,
        "loss": losses[:: max(1, config.steps // 50)] + losses[-1:],
        "checks": checks(model, tokenizer, config.n_check, config.seed),
    }
    return model, tokenizer, record


def checks(model: Any, tokenizer: Any, n: int, seed: int) -> dict[str, float]:
    """The ground-truth checks of the module docstring on ``n`` held-out sequences."""
    sequences, labels, counterfactuals = toy_language.sample(n, seed + 1_000_003)
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        logp = functional.log_softmax(model(input_ids=_ids(tokenizer, sequences)).logits[:, -1].float(), -1)
        cells = [
            {vocab[toy_language.answer_word(t, g, i)] for i in range(toy_language.ANSWERS)}
            for t, g in zip(labels["topic"], labels["negated"], strict=True)
        ]
        top = logp.argmax(dim=-1).tolist()
        out = {"answer_cell_accuracy": sum(w in c for w, c in zip(top, cells, strict=True)) / n}
        for feature, flipped in counterfactuals.items():
            other = functional.log_softmax(
                model(input_ids=_ids(tokenizer, flipped)).logits[:, -1].float(), -1
            )
            kl = (logp.exp() * (logp - other)).sum(dim=-1)
            out[f"counterfactual_kl_{feature}"] = float(kl.mean())
            if feature == "negated":  # the pairs whose negation word is (or goes) just before the filler
                before = toy_language.negation_before_filler
                last = torch.tensor([before(w) or before(f) for w, f in zip(sequences, flipped, strict=True)])
                out["counterfactual_kl_negation_prev"] = float(kl[last].mean())
    return out


def toy_causal_lm_testbed(seed: int = 0, n: int = 600, checkpoint_every: int = 0) -> Testbed:
    """The toy LM of ``ToyLMConfig(seed=seed)`` as a ground-truth testbed (module docstring): ``n``
    held-out sequences as token ids (n, 11), read at ``blocks.1.hook_resid_post[-1]``, with each
    feature's counterfactual sequences; ``checks`` are the model's own. With ``checkpoint_every`` the
    weights every that many steps (and at the end) are its ``checkpoints``, each measured by the
    same checks."""
    config = ToyLMConfig(seed=seed)
    states: list[tuple[int, dict[str, Tensor]]] = []

    def keep(step: int, model: Any) -> None:
        if checkpoint_every and (step % checkpoint_every == 0 or step == config.steps):
            states.append((step, state_copy(model)))

    model, tokenizer, record = train_toy_lm(config, on_step=keep)
    sequences, labels, counterfactuals = toy_language.sample(n, seed + 2_000_003)
    truth: dict[str, GroundTruth] = {
        "topic": "model feature",
        "negated": "model feature",
        "filler_um": "dataset feature",
    }
    return Testbed(
        name="toy_causal_lm",
        model=HuggingFaceCausalLM(model, last_token=True),  # the used axis on the answer's distribution
        inputs=_ids(tokenizer, sequences),
        site="blocks.1.hook_resid_post[-1]",
        features={f: torch.tensor(v, dtype=torch.float32) for f, v in labels.items()},
        ground_truth=truth,
        description="a GPT-2-style LM over the 8,295 words of testbeds/toy_language.py: the answer after "
        "the filler depends on topic and negated only; the filler's identity on nothing",
        checks=record["checks"],
        counterfactuals={f: _ids(tokenizer, flipped) for f, flipped in counterfactuals.items()},
        checkpoints=tuple(
            Checkpoint(step, state, _measured(config, state, tokenizer)) for step, state in states
        ),
    )


def _measured(config: ToyLMConfig, state: dict[str, Tensor], tokenizer: Any) -> dict[str, float]:
    """The checks of the model with weights ``state``."""
    model = build_model(config)
    model.load_state_dict(state)
    return checks(model.eval(), tokenizer, config.n_check, config.seed)


def save_toy_lm(
    folder: str | os.PathLike[str], config: ToyLMConfig = ToyLMConfig(), progress: bool = False
) -> Path:
    """Train the toy LM and write it to ``folder`` as a transformers model and tokenizer, with
    ``toy_lm.json`` (recipe, loss curve, checks). A folder holding this recipe's model is kept as it
    is; the folder appears whole or not at all (written beside it, then renamed)."""
    folder = Path(folder)
    record_path = folder / RECORD
    if record_path.is_file():
        if json.loads(record_path.read_text(encoding="utf-8")).get("config") == asdict(config):
            return folder
        raise FeatureControlsError(
            f"{folder} holds a toy LM of another recipe", "give another folder, or remove that one"
        )
    if folder.exists():
        raise FeatureControlsError(f"{folder} exists and holds no toy LM", "give a new or empty folder path")
    model, tokenizer, record = train_toy_lm(config, progress)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, folder)
    return folder


def main(folder: Path, steps: int, seed: int, progress: bool = True) -> int:
    """``featurecontrols toy-lm FOLDER``: train and save the toy LM; print its checks."""
    saved = save_toy_lm(folder, ToyLMConfig(steps=steps, seed=seed), progress)
    record = json.loads((saved / RECORD).read_text(encoding="utf-8"))
    checks = ", ".join(f"{k} {v:.3g}" for k, v in record["checks"].items())
    print(f"toy causal LM in {saved} ({record['train_seconds']:.0f} s of training): {checks}")
    return 0
