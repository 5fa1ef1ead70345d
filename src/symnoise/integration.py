"""Putting noise on a model: a context manager for any loop (the Trainer classes are in
:mod:`symnoise.trainer`).

Where the noise goes. A forward hook on ``model.get_input_embeddings()`` adds the noise, so
DDP, FSDP, DeepSpeed, gradient checkpointing and PEFT wrappers keep working. The noise
``alpha / sqrt(L d)`` lands on *what the first decoder layer receives*, on every family:
when the embedding module scales its own output (``embed_scale``) the hook sees the scaled
embeddings; when the model's forward scales after it (Gemma, Gemma 2 in transformers 4:
``sqrt(d)``; Granite: ``embedding_multiplier``; MiniCPM: ``scale_emb``) the hook adds
``noise / s`` (:func:`embedding_output_scale`). The measured ratio ``||delta_t|| / ||x_t||``
of the first :data:`RATIO_FORWARDS` noised forwards is kept in :attr:`NoiseHandle.norm_ratios`.

A forward pre-hook on the model records ``attention_mask``, ``position_ids`` and ``labels``
so the hook can scale per sequence, leave padding alone and restrict the noise to the
prompt or the response (``noise_on``). Both hooks are removed on exit.

SymNoise trains each example at ``X + delta`` and ``X - delta``: ``symnoise.pair_batch``
doubles the batch (a packed row is concatenated with itself) and the hook turns the two identical
halves into ``[X + delta; X - delta]`` (``concat``, the paper's Algorithm 2); an unpaired
batch raises. In ``sequential`` mode the two halves are two forward/backward passes, the
second reusing the first's delta (:meth:`NoiseHandle.phase`).

The noise generator is made lazily on the embeddings' device (so a model moved after
attaching works); :meth:`NoiseHandle.state_dict` lets a resumed run draw the same noise.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .config import NoiseConfig
from .noise import perturb

__all__ = ["NoiseHandle", "noisy_embeddings", "get_embedding_module",
           "embedding_output_scale", "RATIO_FORWARDS"]

RATIO_FORWARDS = 20  # noised forwards whose noise-to-embedding ratio is recorded
# families whose model forward multiplies the embedding module's output: model_type -> s
_SQRT_D_AFTER_EMBEDDING = frozenset({"gemma", "gemma2", "recurrent_gemma"})  # transformers 4.x
# config attributes of a factor the model forward applies (Granite, HyperCLOVA X, MiniCPM 1/2
# remote code, HRM): each is read only when the embedding module does not scale itself
_MULTIPLIER_ATTRS = ("embedding_multiplier", "scale_emb", "embedding_scale")


def get_embedding_module(model: nn.Module) -> nn.Module:
    """The module that computes the model's input embeddings (PEFT wrappers included)."""
    getter = getattr(model, "get_input_embeddings", None)
    module = getter() if callable(getter) else None
    if not isinstance(module, nn.Module):
        name = type(model).__name__
        raise ValueError(
            f"{name} has no input embeddings (get_input_embeddings() returned {module!r}); "
            "symnoise needs a model whose token embeddings are a module"
        )
    return module


def embedding_output_scale(model: nn.Module, embedding: nn.Module | None = None) -> float:
    """Factor ``s`` the model applies to the embedding module's output before the first
    decoder layer; 1.0 when it applies none or when the module scales its own output."""
    embedding = embedding if embedding is not None else get_embedding_module(model)
    if hasattr(embedding, "embed_scale"):  # scaled inside the module: the hook sees it
        return 1.0
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in _SQRT_D_AFTER_EMBEDDING:
        return math.sqrt(config.hidden_size)
    for attr in _MULTIPLIER_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return 1.0


def _dist_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def _rank_seed(seed: int) -> int:
    return int(seed) * 1_000_003 + 7919 * _dist_rank()


def _unpaired_error(detail: str) -> ValueError:
    return ValueError(
        f"symnoise concat mode expects a paired batch: {detail}; pair every batch with "
        "symnoise.pair_batch() (NoisyTrainer does) or use symmetric_mode='sequential'"
    )


def _narrow(kw: dict[str, Any], dim: int, size: int) -> dict[str, Any]:
    return {k: (None if v is None else v.narrow(dim, 0, size)) for k, v in kw.items()}


class NoiseHandle:
    """Live state of noise attached to a model (returned by :func:`noisy_embeddings`).

    Attributes:
        config: the :class:`NoiseConfig`.
        calls: number of forwards that received noise (useful in tests and logs).
        scale: the factor ``s`` of :func:`embedding_output_scale` the noise is divided by.
        norm_ratios: for the first :data:`RATIO_FORWARDS` noised forwards, the mean over
            the tokens that may receive noise of ``||delta_token|| / ||x_token||``.
        generator: the noise generator (``None`` until the first noised forward when it is
            made from ``config.seed``; ``None`` throughout when the seed is ``None``).
    """

    def __init__(self, model: nn.Module, config: NoiseConfig,
                 generator: torch.Generator | None = None, scale: float = 1.0):
        self.model = model
        self.config = config
        self.generator = generator
        self.scale = float(scale)
        self.calls = 0
        self.norm_ratios: list[float] = []
        self.labels_hint: torch.Tensor | None = None  # labels when the forward gets none
        self._pending_state: dict[str, Any] | None = None
        # the current forward's attention_mask, position_ids and labels (the pre-hook's)
        self._attention_mask = self._position_ids = self._labels = None
        self._phase: str | None = None  # sequential symnoise: "plus" or "minus"
        self._deltas: list[torch.Tensor] = []  # the +delta pass's, one per forward, in order
        self._paused = False
        self.pair_blocks = 1  # concat: the batch is this many blocks, each paired [X; X]
        self._handles: list[Any] = []

    # -- generator ---------------------------------------------------------------
    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator on ``device``, made on first use; moved when the device changes
        (the new one is seeded from the old stream, so runs stay reproducible)."""
        old = self.generator
        if old is not None and old.device == device:
            return old
        if old is None and self.config.seed is None:
            return None
        gen = torch.Generator(device=device)
        if old is not None:
            gen.manual_seed(int(torch.randint(2**62, (1,), generator=old, device=old.device)))
        elif self._pending_state is not None:
            self._restore_into(gen, self._pending_state)
        else:
            gen.manual_seed(_rank_seed(self.config.seed))
        self._pending_state = None
        self.generator = gen
        return gen

    @staticmethod
    def _restore_into(gen: torch.Generator, state: dict[str, Any]) -> None:
        saved = state.get("generator_state")
        if saved is None:
            gen.manual_seed(_rank_seed(state["seed"]))
        elif state.get("device_type") == gen.device.type:
            gen.set_state(saved)
        else:
            warnings.warn(f"symnoise: noise state saved on {state.get('device_type')} is "
                          f"resumed on {gen.device.type}; its stream continues from a seed "
                          "derived from it, not draw for draw", stacklevel=3)
            gen.manual_seed(int(saved.to(torch.int64).sum()) % 2**62)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the same noise stream."""
        if self._pending_state is not None:
            return dict(self._pending_state)
        gen = self.generator
        return {"seed": self.config.seed, "calls": self.calls,
                "device_type": None if gen is None else gen.device.type,
                "generator_state": None if gen is None else gen.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the noise stream saved by :meth:`state_dict`."""
        state = dict(state)
        if state.get("seed") != self.config.seed:
            raise ValueError(f"symnoise: the saved noise state has seed {state.get('seed')!r} "
                             f"but this run's noise seed is {self.config.seed!r}")
        self.calls = int(state.get("calls", self.calls))
        if self.generator is not None and state.get("device_type") == self.generator.device.type:
            self.generator.set_state(state["generator_state"])
        else:
            self.generator, self._pending_state = None, state

    # -- hooks -----------------------------------------------------------------
    def _pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._attention_mask = kwargs.get("attention_mask")
        self._position_ids = kwargs.get("position_ids")
        labels = kwargs.get("labels")
        self._labels = labels if isinstance(labels, torch.Tensor) else self.labels_hint
        if self._attention_mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            self._attention_mask = args[1]  # forward(input_ids, attention_mask, ...)

    def _embed_forward(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if self._paused or not (module.training and self.config.active
                                and isinstance(output, torch.Tensor) and output.dim() == 3):
            return output
        self.calls += 1
        kw = self._call_kwargs(output)
        if not self.config.symmetric:
            noised = self._perturb(output, kw, self.config.method)
            self._record(output, noised, kw)
            return noised
        if self.config.symmetric_mode == "sequential" or self._phase is not None:
            return self._sequential(output, kw)
        return self._concat(output, kw)

    def _call_kwargs(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """attention_mask, position_ids and noise_mask lined up with ``x``'s (B, L)."""
        kw = {"attention_mask": self._matching(self._attention_mask, x),
              "position_ids": self._matching(self._position_ids, x), "noise_mask": None}
        if self.config.noise_on != "all":
            labels = self._matching(self._labels, x)
            if labels is None:
                got = None if self._labels is None else tuple(self._labels.shape)
                raise ValueError(
                    f"noise_on={self.config.noise_on!r} needs the batch's labels (-100 on "
                    f"prompt tokens) lined up with the input of shape {tuple(x.shape[:2])}; "
                    f"got labels {got}. Pass labels to the model's forward or use noise_on='all'"
                )
            response = labels != -100
            kw["noise_mask"] = response if self.config.noise_on == "response" else ~response
        return kw

    def _perturb(self, x: torch.Tensor, kw: dict[str, Any], method: str) -> torch.Tensor:
        cfg = self.config
        return perturb(x, kw["attention_mask"], method=method, alpha=cfg.alpha / self.scale,
                       norm_match=cfg.norm_match, position_ids=kw["position_ids"],
                       noise_mask=kw["noise_mask"], generator=self._generator_for(x.device))

    def _concat(self, x: torch.Tensor, kw: dict[str, Any]) -> torch.Tensor:
        """[X+delta; X-delta] from a paired batch: halves of the length when the batch is one
        packed row, else halves of the rows of each of the :attr:`pair_blocks` row blocks
        (``[C; C; R; R]`` -> ``[C+d; C-d; R+e; R-e]``), drawn as one ``[C; R]`` batch."""
        if x.shape[0] == 1:
            return self._concat_packed(x, kw)
        n = self.pair_blocks
        if x.shape[0] % (2 * n):
            raise _unpaired_error(f"{n} block(s) of two identical halves, but got "
                                  f"{x.shape[0]} rows")
        split = x.unflatten(0, (n, 2, -1))
        if not torch.equal(split[:, 0], split[:, 1]):
            raise _unpaired_error(f"the two halves of the {x.shape[0]} rows hold different "
                                  "examples" + (f" (in {n} blocks)" if n > 1 else ""))
        x_half = split[:, 0].flatten(0, 1)
        kw_half = {k: None if v is None else v.unflatten(0, (n, 2, -1))[:, 0].flatten(0, 1)
                   for k, v in kw.items()}
        both = self._perturb(x_half, kw_half, "symnoise")
        self._record(x_half, both[: x_half.shape[0]], kw_half)
        return both.unflatten(0, (2, n, -1)).transpose(0, 1).flatten(0, 2)

    def _concat_packed(self, x: torch.Tensor, kw: dict[str, Any]) -> torch.Tensor:
        size = x.shape[1]
        if size % 2:
            raise _unpaired_error(f"two identical halves, but got {size} tokens in its one row")
        half = size // 2
        if not torch.equal(x.narrow(1, 0, half), x.narrow(1, half, half)):
            raise _unpaired_error("the two halves of the packed row hold different examples")
        x_half, kw_half = x.narrow(1, 0, half), _narrow(kw, 1, half)
        both = self._perturb(x_half, kw_half, "symnoise")
        self._record(x_half, both[:1], kw_half)
        return torch.cat(both.chunk(2, dim=0), dim=1)

    def _sequential(self, x: torch.Tensor, kw: dict[str, Any]) -> torch.Tensor:
        if self._phase == "minus":  # the k-th forward reuses the +delta pass's k-th delta
            delta = self._deltas.pop(0) if self._deltas else None
            if delta is None or delta.shape != x.shape:
                raise RuntimeError(
                    "symnoise sequential: the -delta pass must follow a +delta pass on the "
                    "same batch (use NoiseHandle.phase('plus') then phase('minus'))"
                )
            return x - delta
        plus = self._perturb(x, kw, "symnoise")[: x.shape[0]]
        if self._phase is None:  # no phases: keep the last forward's delta only
            self._deltas.clear()
        self._deltas.append((plus - x).detach())
        self._record(x, plus, kw)
        return plus

    def _record(self, x: torch.Tensor, noised: torch.Tensor, kw: dict[str, Any]) -> None:
        """Keep ``mean ||delta_t|| / ||x_t||`` over the tokens that may get noise."""
        if len(self.norm_ratios) >= RATIO_FORWARDS:
            return
        with torch.no_grad():
            x32 = x.detach().float()
            ratio = (noised.detach().float() - x32).norm(dim=-1) / x32.norm(dim=-1).clamp_min(1e-12)
            keep = torch.ones_like(ratio, dtype=torch.bool)
            for name in ("attention_mask", "noise_mask"):
                if kw[name] is not None:
                    keep &= kw[name].to(keep.device) != 0
            if bool(keep.any()):
                self.norm_ratios.append(float(ratio[keep].mean()))

    @staticmethod
    def _matching(t: torch.Tensor | None, embeds: torch.Tensor) -> torch.Tensor | None:
        """``t`` if it lines up with the embeddings' (batch, length), else None."""
        lined_up = isinstance(t, torch.Tensor) and tuple(t.shape) == tuple(embeds.shape[:2])
        return t if lined_up else None

    # -- control ---------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Measured noise for run records: mean ratio over the recorded forwards."""
        ratios = self.norm_ratios
        return {
            "noise_to_embedding_ratio_mean": sum(ratios) / len(ratios) if ratios else None,
            "n_forwards": len(ratios),
            "noised_forwards": self.calls,
            "embedding_scale": self.scale,
            "noise_on": self.config.noise_on,
        }

    @contextlib.contextmanager
    def phase(self, sign: str) -> Iterator[None]:
        """Sequential SymNoise: run the +delta pass under ``phase('plus')``, then the same
        batch under ``phase('minus')``; the second reuses the first pass's delta."""
        if sign not in ("plus", "minus"):
            raise ValueError(f"phase must be 'plus' or 'minus', got {sign!r}")
        previous, self._phase = self._phase, sign
        if sign == "plus":
            self._deltas.clear()
        try:
            yield
        finally:
            self._phase = previous

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No noise inside the block: a reference pass through the same embedding module
        (a PEFT model with its adapter disabled)."""
        previous, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = previous

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._deltas.clear()
        self._attention_mask = self._position_ids = self._labels = self.labels_hint = None


def _attached_handle(module: nn.Module) -> NoiseHandle | None:
    for hook in module._forward_hooks.values():
        owner = getattr(hook, "__self__", None)
        if isinstance(owner, NoiseHandle):
            return owner
    return None


@contextlib.contextmanager
def noisy_embeddings(
    model: nn.Module,
    config: NoiseConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Iterator[NoiseHandle]:
    """Attach noise to ``model``'s input embeddings for the duration of the block.

    Noise is added only while the embedding module is in training mode. For SymNoise in
    ``concat`` mode feed batches through :func:`pair_batch`; in ``sequential`` mode run
    each batch twice, under ``handle.phase('plus')`` and ``handle.phase('minus')``, and
    halve each loss. On exit the hooks are removed and the model is exactly as before.
    Attaching to a model that already has symnoise noise raises.

    ``config`` may be omitted and given as keyword arguments (``method=..., alpha=...``).
    ``generator`` overrides the one made lazily from ``config.seed``.
    """
    if config is None:
        config = NoiseConfig(**kwargs)
    elif kwargs:
        raise TypeError("give either a NoiseConfig or keyword arguments, not both")
    embedding = get_embedding_module(model)
    if _attached_handle(embedding) is not None:
        raise RuntimeError(
            f"{type(model).__name__} already has symnoise noise attached to its input "
            "embeddings (nested noisy_embeddings, or a NoisyTrainer on a model inside "
            "noisy_embeddings); attach noise once"
        )
    handle = NoiseHandle(model, config, generator, embedding_output_scale(model, embedding))
    handle._handles.append(model.register_forward_pre_hook(handle._pre_forward, with_kwargs=True))
    handle._handles.append(embedding.register_forward_hook(handle._embed_forward))
    try:
        yield handle
    finally:
        handle.remove()
