"""Named sites in a torch model: read their activations, or intervene on them, through forward hooks.

A site is a module path (as in ``model.named_modules()``), whether to take the module's output or
its first positional input, and an optional position along dim 1 (the sequence axis)::

    "blocks.0.mlp"                  output of blocks.0.mlp
    "blocks.0.mlp:input"            first positional input of blocks.0.mlp
    "blocks.0.hook_resid_post[-1]"  output at the last position
    "x:input[1:3]"                  input at positions 1 and 2

Activations come back as (N, d) matrices: d is the tensor's last dim, N every other dim flattened
(after the position selector).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from featurecontrols.errors import FeatureControlsError
from featurecontrols.progress import track

if TYPE_CHECKING:
    from featurecontrols.pipeline.store import ShardedStore

Forward = Callable[[nn.Module, Any], Any]
IO = Literal["output", "input"]

_MODULE = re.compile(r"[^:\[\]\s]*")
_SPEC = re.compile(rf"^(?P<module>{_MODULE.pattern})(?::(?P<io>input|output))?(?:\[(?P<position>[^\]]*)\])?$")
_INT = r"-?\d+"
_POSITION = re.compile(rf"^(?P<index>{_INT})$|^(?P<start>{_INT})?:(?P<stop>{_INT})?(?::(?P<step>{_INT})?)?$")


@dataclass(frozen=True)
class Site:
    """Where to read or intervene: ``module`` path, its ``io`` and a ``position`` along dim 1.

    ``module`` is a name from ``model.named_modules()`` ("" is the model itself). ``position``
    (an int or a slice) indexes dim 1 of the tensor, the sequence axis; ``None`` keeps all positions.
    ``str(site)`` is the canonical spec that :meth:`parse` reads back.
    """

    module: str
    io: IO = "output"
    position: int | slice | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.module, str) or not _MODULE.fullmatch(self.module):
            raise FeatureControlsError(
                f"site module must be a module path like 'blocks.0.mlp', got {self.module!r}",
                "give the module name alone; put ':input' and '[position]' in Site.parse's spec",
            )
        if self.io not in ("output", "input"):
            raise FeatureControlsError(
                f"site io must be 'output' or 'input', got {self.io!r}", "use one of the two"
            )
        p = self.position
        ok = p is None or (isinstance(p, int) and not isinstance(p, bool))
        if isinstance(p, slice):
            parts = (p.start, p.stop, p.step)
            ok = (
                all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in parts)
                and p.step != 0
            )
        if not ok:
            raise FeatureControlsError(
                f"site position must be None, an int or a slice of ints with a non-zero step, got {p!r}",
                "select positions like Site('blocks.0', position=-1) or Site.parse('blocks.0[1:3]')",
            )

    @classmethod
    def parse(cls, spec: str | Site) -> Site:
        """Read a spec like ``"blocks.0.mlp:input[-1]"``; a :class:`Site` is returned unchanged."""
        if isinstance(spec, Site):
            return spec
        m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
        pos = _POSITION.match(m["position"]) if m is not None and m["position"] is not None else None
        if m is None or (m["position"] is not None and pos is None):
            raise FeatureControlsError(
                f"cannot read the site spec {spec!r}",
                "write MODULE[:input|:output][[POSITION]], e.g. 'blocks.0.mlp', 'blocks.0.mlp:input', "
                "'blocks.0.hook_resid_post[-1]', 'x[1:3]'",
            )
        io: IO = "input" if m["io"] == "input" else "output"
        position: int | slice | None = None
        if pos is not None:
            if pos["index"] is not None:
                position = int(pos["index"])
            else:
                start, stop, step = (
                    None if v is None else int(v) for v in pos.group("start", "stop", "step")
                )
                position = slice(start, stop, step)
        return cls(m["module"], io, position)

    def __str__(self) -> str:
        io = ":input" if self.io == "input" else ""
        p = self.position
        if p is None:
            return f"{self.module}{io}"
        if isinstance(p, int):
            return f"{self.module}{io}[{p}]"
        text = ":".join("" if v is None else str(v) for v in (p.start, p.stop))
        return f"{self.module}{io}[{text}{'' if p.step is None else f':{p.step}'}]"

    def __hash__(self) -> int:  # slices are unhashable before Python 3.12
        return hash(str(self))


def site_names(model: nn.Module) -> list[str]:
    """Every module path of ``model`` a site can name ("" is the model itself), shared modules included."""
    return [name for name, _ in model.named_modules(remove_duplicate=False)]


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule at path ``name``; an unknown name raises with the nearest valid names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        nearest = difflib.get_close_matches(name, [n for n in site_names(model) if n], n=5)
        hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
        fix = "pick a name from print(featurecontrols.adapters.sites.site_names(model))"
        if ".hook_" in name or name.startswith("hook_"):
            fix = (
                f"{name!r} is a TransformerLens hook name: a Hugging Face model takes them through its "
                "adapter, Battery().run(HuggingFaceEncoder(model, level), ...) (featurecontrols.adapters."
                "huggingface: resid_aliases(model) lists them); else " + fix
            )
        problem = f"{type(model).__name__} has no module named {name!r}{hint}"
        raise FeatureControlsError(problem, fix) from None


def call_model(model: nn.Module, batch: Any) -> Any:
    """The default forward: a tuple is positional args, a Mapping keyword args, anything else one arg.

    Tensors in the batch move to the device of the model's parameters (when it has any).
    """
    param = next(model.parameters(), None)
    if param is not None:
        batch = _to_device(batch, param.device)
    if isinstance(batch, tuple):
        return model(*batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(batch)


def batch_rows(batch: Any) -> int:
    """Number of inputs in a batch: the first dimension of its first tensor."""
    values = (
        batch.values()
        if isinstance(batch, Mapping)
        else batch
        if isinstance(batch, (tuple, list))
        else [batch]
    )
    for value in values:
        if isinstance(value, Tensor):
            return int(value.shape[0])
    raise FeatureControlsError(
        f"a batch of type {type(batch).__name__} holds no tensor, so its number of inputs is unknown",
        "give batches as tensors, tuples of tensors, or dicts of tensors",
    )


def repeat_batch(batch: Any, times: int) -> Any:
    """The batch with its inputs stacked ``times`` times along dim 0 (tensors, tuples, Mappings)."""
    if isinstance(batch, Tensor):
        return batch.repeat(times, *([1] * (batch.ndim - 1)))
    if isinstance(batch, tuple):
        return tuple(repeat_batch(b, times) for b in batch)
    if isinstance(batch, Mapping):
        return {k: repeat_batch(v, times) for k, v in batch.items()}
    raise FeatureControlsError(
        f"a batch of type {type(batch).__name__} cannot be stacked to run many interventions at once",
        "give batches as tensors, tuples of tensors, or dicts of tensors",
    )


def take_rows(batch: Any, rows: Tensor) -> Any:
    """The batch's examples ``rows`` (indices along dim 0) only, in that order (tensors, tuples,
    Mappings; a Mapping's tensors that do not have the batch's rows are kept whole)."""
    if isinstance(batch, Tensor):
        return batch[rows.to(batch.device)]
    if isinstance(batch, tuple):
        return tuple(take_rows(b, rows) for b in batch)
    if isinstance(batch, Mapping):
        n = next((v.shape[0] for v in batch.values() if isinstance(v, Tensor) and v.ndim), None)
        return {
            k: take_rows(v, rows) if isinstance(v, Tensor) and v.ndim and v.shape[0] == n else v
            for k, v in batch.items()
        }
    raise FeatureControlsError(
        f"a batch of type {type(batch).__name__} cannot be cut to some of its examples",
        "give batches as tensors, tuples of tensors, or dicts of tensors",
    )


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple):
        return tuple(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _unwrap(value: Any, site: Site) -> Tensor:
    """The tensor in a module's output or positional inputs: itself, or a tuple/list's first item."""
    first = value[0] if isinstance(value, (tuple, list)) and len(value) > 0 else value
    if isinstance(first, Tensor):
        return first
    what = "first positional input" if site.io == "input" else "output"
    got = type(value).__name__
    if first is not value:
        got = f"{got} whose first element is a {type(first).__name__}"
    elif isinstance(value, (tuple, list)):
        got = f"empty {got}"
    raise FeatureControlsError(
        f"site {site}: the module's {what} is a {got}, not a tensor or a tuple/list starting with one",
        "choose a site whose module takes or returns a tensor "
        "(see featurecontrols.adapters.sites.site_names(model)), "
        "or wrap the computation you want in an nn.Identity submodule and name that",
    )


def _rewrap(original: Any, tensor: Tensor) -> Any:
    """Put ``tensor`` back where :func:`_unwrap` found its tensor, keeping the container type."""
    if isinstance(original, Tensor):
        return tensor
    rest = list(original[1:])
    if isinstance(original, list):
        return [tensor, *rest]
    if hasattr(original, "_fields"):  # a namedtuple
        return type(original)(tensor, *rest)
    return (tensor, *rest)


SiteHook = Callable[[Tensor], Tensor | None]


@contextmanager
def _hooked(model: nn.Module, hooks: Sequence[tuple[Site, SiteHook]]) -> Iterator[None]:
    """Call each ``hook(tensor)`` whenever its site's module runs; a returned tensor replaces the original.

    Every hook is removed on exit, also when the body raises.
    """
    modules = [resolve_module(model, site.module) for site, _ in hooks]  # all names checked before any hook
    with ExitStack() as stack:
        for module, (site, hook) in zip(modules, hooks, strict=True):
            stack.callback(_register(module, site, hook).remove)
        yield


def _register(module: nn.Module, site: Site, hook: SiteHook) -> RemovableHandle:
    def replace(value: Any) -> Any:
        new = hook(_unwrap(value, site))
        return None if new is None else _rewrap(value, new)

    if site.io == "input":
        return module.register_forward_pre_hook(lambda _, args: replace(args))
    return module.register_forward_hook(lambda _, args, output: replace(output))


@contextmanager
def intervene(model: nn.Module, site: str | Site, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """While active, the site's tensor ``h`` is replaced by ``fn(h)`` in every forward pass.

    ``fn`` gets the whole tensor (before any position selection; it may use ``site.position``
    itself) and must return one of the same shape. For an ``input`` site ``h`` is the first
    positional input. Interventions nest: inner ones apply after outer ones at the same module.
    """
    parsed = Site.parse(site)

    def replace(h: Tensor) -> Tensor:
        new = fn(h)
        if not isinstance(new, Tensor) or new.shape != h.shape:
            got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
            raise FeatureControlsError(
                f"the intervention at {parsed} returned {got}, but the site's tensor is {tuple(h.shape)}",
                "return a tensor of the same shape as the one the function receives",
            )
        return new

    with _hooked(model, [(parsed, replace)]):
        yield


class _StopForward(Exception):  # noqa: N818 (a signal, not an error)
    """Raised from a hook once every site has been captured, to skip the rest of the forward pass."""


def read_activations(
    model: nn.Module,
    batches: Iterable[Any],
    sites: str | Site | Sequence[str | Site],
    *,
    forward: Forward | None = None,
    stop_early: bool = True,
    store: ShardedStore | None = None,
    progress: int | None = None,
) -> dict[str, Tensor]:
    """Run ``forward(model, batch)`` on every batch and return each site's activations, shape (N, d).

    ``batches`` yields Tensors, tuples (positional args) or Mappings (keyword args); ``forward``
    defaults to :func:`call_model`. Keys are the canonical ``str(Site)``; values are CPU float
    tensors (float64 stays float64, anything else becomes float32), rows in batch order. With
    ``stop_early`` the forward pass is cut once every site has been seen. Runs under
    ``torch.no_grad()`` and leaves ``model.training`` as it is (call ``model.eval()`` for
    deterministic dropout). With ``store``, activations stream to disk in shards, and a complete
    cache already in the store that passes its checks (``ShardedStore.fill``) is loaded without
    running the model. ``progress`` is the number of
    batches, for a progress bar (drawn when rich is installed); ``None`` draws none.
    """
    wanted = _unique_sites(sites)
    run = forward if forward is not None else call_model
    if store is None:
        parts: dict[str, list[Tensor]] = {str(s): [] for s in wanted}
        _run(model, batches, wanted, run, stop_early, progress, lambda key, acts: parts[key].append(acts))
        return {key: torch.cat(chunks) for key, chunks in parts.items()}
    store.fill(lambda writer: _run(model, batches, wanted, run, stop_early, progress, writer.append))
    return {str(s): store.load(s) for s in wanted}


def _unique_sites(sites: str | Site | Sequence[str | Site]) -> list[Site]:
    parsed = [Site.parse(s) for s in ([sites] if isinstance(sites, (str, Site)) else sites)]
    if not parsed:
        raise FeatureControlsError("no sites were given", "pass at least one site, e.g. ['blocks.0.mlp']")
    return list(dict.fromkeys(parsed))


def _run(
    model: nn.Module,
    batches: Iterable[Any],
    sites: list[Site],
    forward: Forward,
    stop_early: bool,
    progress: int | None,
    emit: Callable[[str, Tensor], None],
) -> None:
    """Run the forward pass per batch and ``emit(site key, (N, d) activations)`` for every site."""
    captured: dict[str, Tensor] = {}

    def capture(site: Site) -> SiteHook:
        key = str(site)

        def hook(h: Tensor) -> None:
            if key in captured:
                raise FeatureControlsError(
                    f"the module of site {site} ran more than once in a forward pass: the site is ambiguous",
                    "name a module that runs once per forward pass (a shared module runs at each use), "
                    "or wrap the call you want in its own nn.Identity submodule",
                )
            captured[key] = _select(h, site)
            if stop_early and len(captured) == len(sites):
                raise _StopForward

        return hook

    n_batches = 0
    with torch.no_grad(), _hooked(model, [(s, capture(s)) for s in sites]):
        for batch in track(batches, "reading activations", progress, enabled=progress is not None):
            captured.clear()
            with suppress(_StopForward):
                forward(model, batch)
            missing = [str(s) for s in sites if str(s) not in captured]
            if missing:
                raise FeatureControlsError(
                    f"the forward pass never reached site(s) {', '.join(missing)} (batch {n_batches})",
                    "check that forward(model, batch) runs these modules on these inputs "
                    "(a branch not taken, or a forward that returns early, skips them)",
                )
            for s in sites:
                emit(str(s), captured[str(s)])
            n_batches += 1
    if n_batches == 0:
        raise FeatureControlsError("the dataset is empty (no batches)", "pass at least one batch")


def _select(h: Tensor, site: Site) -> Tensor:
    """Apply the site's position selector on dim 1 and flatten to a CPU (N, d) copy."""
    if h.ndim < 2:
        raise FeatureControlsError(
            f"site {site} gives a tensor of shape {tuple(h.shape)}, with no feature dimension",
            "choose a site whose tensor is at least (batch, features)",
        )
    if site.position is not None:
        if h.ndim < 3:
            raise FeatureControlsError(
                f"site {site} selects positions along dim 1, but its tensor has shape {tuple(h.shape)}: "
                "dim 1 is the feature dim, there is no sequence axis",
                f"drop the position selector: use '{Site(site.module, site.io)}'",
            )
        try:
            chosen = range(h.shape[1])[site.position]
        except IndexError:
            chosen = range(0)
        if isinstance(chosen, range) and len(chosen) == 0:
            raise FeatureControlsError(
                f"site {site} selects no position from a sequence of length {h.shape[1]}",
                f"use positions within [-{h.shape[1]}, {h.shape[1] - 1}]",
            )
        h = h[:, site.position]
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
    return h.detach().reshape(-1, h.shape[-1]).to(device="cpu", dtype=dtype, copy=True)
