"""A model's training history read from a folder, as the series runs it (``pipeline/series.py``).

Two layouts, found by name (the step is the last number in each entry's name):

    OUT/checkpoint-500/model.safetensors     a Hugging Face Trainer's output folder (sharded
    OUT/checkpoint-500/trainer_state.json    model-0000i-of-0000n.safetensors too; or pytorch_model.bin)
    OUT/step_500.safetensors                 one state dict per file (.safetensors, .pt, .pth, .bin)

Weights are read without unpickling: safetensors, or ``torch.load(weights_only=True)``, which loads
tensors and refuses any other object. A state dict saved without a tied duplicate (``save_pretrained``
drops GPT-2's ``lm_head.weight``, the embedding's twin) gets it back from its twin, found by the model's
own parameters sharing storage. A checkpoint of the model inside a larger one (a Trainer saves
``BertForMaskedLM``: ``bert.embeddings...`` and the head ``cls...``; the run reads ``BertModel``:
``embeddings...``) is cut to the model: the prefix dropped, the rest of the larger model left out;
parameters the larger model does not have (``BertModel``'s pooler, drawn at random when the model was
loaded) keep the model's values, with a warning naming them. A Trainer folder's
``trainer_state.json`` gives each checkpoint its measures: per logged quantity (loss, eval_loss,
...), its last value logged at or before the step.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.checkpoint import Checkpoint

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
LAYOUT = "checkpoint-<step>/ folders (a Hugging Face Trainer's output) or <name><step>.safetensors files"


def read_checkpoints(folder: str | Path, model: nn.Module) -> list[Checkpoint]:
    """Every checkpoint under ``folder`` (module docstring), sorted by step, completed with ``model``'s
    tied parameters; raises before reading any weights if the folder holds none or two share a step."""
    root = Path(folder)
    if not root.is_dir():
        raise FeatureControlsError(f"checkpoint folder {root} does not exist", f"give a folder of {LAYOUT}")
    entries: dict[int, Path] = {}
    for entry in sorted(root.iterdir()):
        step = _step(entry.name)
        if step is None or not _weight_files(entry):
            continue
        if step in entries:
            raise FeatureControlsError(
                f"{entries[step].name} and {entry.name} in {root} are both step {step}",
                "keep one checkpoint per step in the folder",
            )
        entries[step] = entry
    if not entries:
        raise FeatureControlsError(f"no checkpoints in {root}", f"give a folder of {LAYOUT}")
    own, twins = model.state_dict(), _tied(model)
    checkpoints, kept = [], set()
    for step in sorted(entries):
        saved = _state(entries[step])
        state = _complete(_inner(saved, list(own)), twins)
        if state is not saved:  # cut out of a larger model: what it lacks stays the model's own
            kept |= {n for n in own if n not in state}
            state |= {n: own[n].clone() for n in own if n not in state}
        checkpoints.append(Checkpoint(step, state, _measures(entries[step], step)))
    if kept:
        warnings.warn(
            f"no checkpoint in {root} holds {sorted(kept)[:4]} (the model inside the larger one they "
            "were saved from): kept at the model's own values in every run",
            stacklevel=2,
        )
    return checkpoints


def _step(name: str) -> int | None:
    """The last number in a file or folder name (``checkpoint-500``, ``step_500.safetensors``)."""
    numbers = re.findall(r"\d+", name.split(".")[0])
    return int(numbers[-1]) if numbers else None


def _weight_files(entry: Path) -> list[Path]:
    """A checkpoint's weight files: the entry itself, or in a folder its safetensors shards, else its
    one pickle-free torch file."""
    if entry.is_file():
        return [entry] if entry.suffix in WEIGHT_SUFFIXES else []
    if not entry.is_dir():
        return []
    shards = sorted(entry.glob("*.safetensors"))
    if shards:
        return shards
    return sorted(
        p for p in entry.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.name.startswith("pytorch_model")
    )


def _state(entry: Path) -> dict[str, Tensor]:
    """The state dict of one checkpoint, every shard merged."""
    state: dict[str, Tensor] = {}
    for path in _weight_files(entry):
        part = load_file(path) if path.suffix == ".safetensors" else _torch_file(path)
        state.update(part)
    return state


def _torch_file(path: Path) -> dict[str, Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled objects other than tensors
        raise FeatureControlsError(
            f"{path} is not a state dict of tensors that loads without unpickling: {err}",
            "save the checkpoint with safetensors (safetensors.torch.save_file(model.state_dict(), ...))",
        ) from None
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise FeatureControlsError(
            f"{path} holds a {type(loaded).__name__}, not a state dict of tensors",
            "save model.state_dict() itself",
        )
    return {str(k): v for k, v in loaded.items()}


def _inner(state: dict[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    """``state`` cut to the model whose state-dict names are ``names`` when it holds them under a
    prefix (its first name as ``<prefix>.<name>``), else ``state`` itself (the series' own check
    reports a mismatch)."""
    if not names or names[0] in state:
        return state
    prefix = next((k[: -len(names[0])] for k in state if k.endswith("." + names[0])), None)
    if prefix is None:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _tied(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that share storage in ``model`` (tied weights)."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.numel():
            groups.setdefault((tensor.data_ptr(), tensor.numel()), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _complete(state: dict[str, Tensor], twins: list[list[str]]) -> dict[str, Tensor]:
    """``state`` with each tied parameter it lacks copied from a twin it holds."""
    for names in twins:
        held = next((n for n in names if n in state), None)
        if held is not None:
            state.update({n: state[held] for n in names if n not in state})
    return state


def _measures(entry: Path, step: int) -> dict[str, float]:
    """Per quantity a Trainer logged (``trainer_state.json``), its last value at or before ``step``."""
    path = entry / "trainer_state.json"
    if not path.is_file():
        return {}
    try:
        history = json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
    except (json.JSONDecodeError, AttributeError):
        raise FeatureControlsError(
            f"{path} is not a Trainer state (JSON with log_history)", "remove it or fix it"
        ) from None
    measures: dict[str, float] = {}
    for record in sorted((r for r in history if isinstance(r, dict)), key=lambda r: r.get("step", 0)):
        if not isinstance(record.get("step"), int) or record["step"] > step:
            continue
        for key, value in record.items():
            if (
                key not in ("step", "epoch")
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                measures[key] = float(value)
    return measures
