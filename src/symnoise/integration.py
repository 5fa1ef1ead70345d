"""Putting noise on a model: a context manager for any loop, and Trainer integration.

The noise lives in the forward of the model's input-embedding module (a forward hook on
``model.get_input_embeddings()``), so DDP, FSDP, DeepSpeed, gradient checkpointing and
PEFT wrappers keep working unchanged. A forward pre-hook on the model itself records the
``attention_mask`` and ``position_ids`` of the current call so the embedding hook can scale
per sequence and leave padding alone. Both hooks are removed on exit: nothing remains on
the model and saved checkpoints are plain Hugging Face checkpoints.

SymNoise needs one example at ``X + delta`` and at ``X - delta``. The batch is paired before
the forward (:func:`pair_batch` doubles every per-example tensor), and the hook turns the
two identical halves into ``[X + delta; X - delta]`` (``concat``, the paper's Algorithm 2).
In ``sequential`` mode the +delta half and the -delta half are two forward/backward passes
over the un-doubled batch, the second reusing the first's delta (see
:meth:`NoiseHandle.phase`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .config import NoiseConfig
from .noise import perturb

__all__ = [
    "NoiseHandle",
    "noisy_embeddings",
    "pair_batch",
    "rank_generator",
    "NoiseTrainerMixin",
    "noisy_trainer_class",
    "get_embedding_module",
]

_PAIR_KEYS_SKIP = frozenset({"num_items_in_batch", "return_loss", "use_cache"})


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


def _dist_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def rank_generator(seed: int | None, device: torch.device | str) -> torch.Generator | None:
    """A generator for the noise of this process: ``seed`` offset by the distributed rank.

    Trainers seed every rank identically, so drawing from the global generator would give
    all ranks the same noise; this keeps ranks different and runs reproducible.
    """
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) * 1_000_003 + 7919 * _dist_rank())
    return gen


def pair_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Double every per-example tensor of ``batch``: rows ``B..2B-1`` repeat rows ``0..B-1``.

    Used for SymNoise ``concat`` mode: the model then sees ``[X+delta; X-delta]`` and the
    loss over the doubled batch is the mean over both halves. Non-tensor entries and
    scalars are passed through.
    """
    out: dict[str, Any] = {}
    batch_size = None
    for key, value in batch.items():
        if key in _PAIR_KEYS_SKIP or not isinstance(value, torch.Tensor) or value.dim() == 0:
            out[key] = value
            continue
        if batch_size is None:
            batch_size = value.shape[0]
        elif value.shape[0] != batch_size:
            raise ValueError(
                f"cannot pair batch: {key!r} has {value.shape[0]} rows, expected {batch_size}"
            )
        out[key] = torch.cat([value, value], dim=0)
    return out


class NoiseHandle:
    """Live state of noise attached to a model (returned by :func:`noisy_embeddings`).

    Attributes:
        config: the :class:`NoiseConfig`.
        calls: number of forwards that received noise (useful in tests and logs).
    """

    def __init__(self, model: nn.Module, config: NoiseConfig, generator: torch.Generator | None):
        self.model = model
        self.config = config
        self.generator = generator
        self.calls = 0
        self._attention_mask: torch.Tensor | None = None
        self._position_ids: torch.Tensor | None = None
        self._phase: str | None = None  # sequential symnoise: "plus" or "minus"
        self._stored_delta: torch.Tensor | None = None
        self._enabled = True
        self._handles: list[Any] = []

    # -- hooks -----------------------------------------------------------------
    def _pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._attention_mask = kwargs.get("attention_mask")
        self._position_ids = kwargs.get("position_ids")
        if self._attention_mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            self._attention_mask = args[1]  # forward(input_ids, attention_mask, ...)

    def _embed_forward(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if not (self._enabled and module.training and self.config.active):
            return output
        if not isinstance(output, torch.Tensor) or output.dim() != 3:
            return output
        mask, pos = self._matching(self._attention_mask, output), self._matching(
            self._position_ids, output
        )
        cfg = self.config
        self.calls += 1
        if not cfg.symmetric:
            return perturb(
                output, mask, method=cfg.method, alpha=cfg.alpha, norm_match=cfg.norm_match,
                position_ids=pos, generator=self.generator,
            )
        if cfg.symmetric_mode == "sequential" or self._phase is not None:
            return self._sequential(output, mask, pos)
        rows = output.shape[0]
        if rows % 2:
            raise ValueError(
                f"symnoise concat mode expects a paired batch (rows 0..B-1 repeated as rows "
                f"B..2B-1) but got {rows} rows; pair the batch with symnoise.pair_batch() or "
                "use symmetric_mode='sequential'"
            )
        half = rows // 2
        return perturb(
            output[:half], None if mask is None else mask[:half],
            method="symnoise", alpha=cfg.alpha, norm_match=cfg.norm_match,
            position_ids=None if pos is None else pos[:half], generator=self.generator,
        )

    def _sequential(self, x: torch.Tensor, mask, pos) -> torch.Tensor:
        cfg = self.config
        if self._phase == "minus":
            delta = self._stored_delta
            self._stored_delta = None
            if delta is None or delta.shape != x.shape:
                raise RuntimeError(
                    "symnoise sequential: the -delta pass must follow a +delta pass on the "
                    "same batch (use NoiseHandle.phase('plus') then phase('minus'))"
                )
            return x - delta
        both = perturb(
            x, mask, method="symnoise", alpha=cfg.alpha, norm_match=cfg.norm_match,
            position_ids=pos, generator=self.generator,
        )
        plus = both[: x.shape[0]]
        self._stored_delta = (plus - x).detach()
        return plus

    @staticmethod
    def _matching(t: torch.Tensor | None, embeds: torch.Tensor) -> torch.Tensor | None:
        """``t`` if it lines up with the embeddings' (batch, length), else None."""
        if t is None or not isinstance(t, torch.Tensor):
            return None
        if t.dim() == 2 and tuple(t.shape) == tuple(embeds.shape[:2]):
            return t
        return None

    # -- control ---------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, sign: str) -> Iterator[None]:
        """Sequential SymNoise: run the +delta pass under ``phase('plus')``, then the same
        batch under ``phase('minus')``; the second reuses the first pass's delta."""
        if sign not in ("plus", "minus"):
            raise ValueError(f"phase must be 'plus' or 'minus', got {sign!r}")
        previous, self._phase = self._phase, sign
        try:
            yield
        finally:
            self._phase = previous

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Temporarily turn noise off (e.g. for a clean loss in training mode)."""
        previous, self._enabled = self._enabled, False
        try:
            yield
        finally:
            self._enabled = previous

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stored_delta = None
        self._attention_mask = self._position_ids = None


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

    ``config`` may be omitted and given as keyword arguments (``method=..., alpha=...``).
    """
    if config is None:
        config = NoiseConfig(**kwargs)
    elif kwargs:
        raise TypeError("give either a NoiseConfig or keyword arguments, not both")
    embedding = get_embedding_module(model)
    if generator is None and config.seed is not None:
        device = next((p.device for p in embedding.parameters()), torch.device("cpu"))
        generator = rank_generator(config.seed, device)
    handle = NoiseHandle(model, config, generator)
    handle._handles.append(model.register_forward_pre_hook(handle._pre_forward, with_kwargs=True))
    handle._handles.append(embedding.register_forward_hook(handle._embed_forward))
    try:
        yield handle
    finally:
        handle.remove()


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


class NoiseTrainerMixin:
    """Mixin for ``transformers.Trainer`` subclasses (TRL's ``SFTTrainer`` included).

    Pass ``noise_config=NoiseConfig(...)``. During ``train()`` the model's embeddings are
    noised; SymNoise batches are paired (concat) or run as a +delta and a -delta pass
    (sequential) so that each example is trained at ``X + delta`` and ``X - delta`` with the
    loss averaged over both. Evaluation and prediction see no noise.
    """

    def __init__(self, *args: Any, noise_config: NoiseConfig | None = None, **kwargs: Any):
        self.noise_config = noise_config or NoiseConfig(method="none", alpha=0.0)
        self.noise_handle: NoiseHandle | None = None
        super().__init__(*args, **kwargs)
        args_obj = getattr(self, "args", None)
        if getattr(args_obj, "neftune_noise_alpha", None) and self.noise_config.active:
            raise ValueError(
                "both the Trainer's neftune_noise_alpha and a symnoise NoiseConfig are set; "
                "use one (method='uniform' reproduces NEFTune)"
            )

    def train(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        cfg = self.noise_config
        if cfg.seed is None:
            cfg.seed = int(getattr(self.args, "seed", 0))
        with noisy_embeddings(_unwrap(self.model), cfg) as handle:
            self.noise_handle = handle
            try:
                return super().train(*args, **kwargs)
            finally:
                self.noise_handle = None

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None):  # type: ignore[override]
        cfg = self.noise_config
        handle = self.noise_handle
        if handle is None or not cfg.symmetric or not cfg.active:
            return super().training_step(model, inputs, num_items_in_batch)
        if cfg.symmetric_mode == "concat":
            paired = pair_batch(inputs)
            doubled = None if num_items_in_batch is None else num_items_in_batch * 2
            return super().training_step(model, paired, doubled)
        # sequential: two passes into the same gradient, each weighted 1/2
        self._symnoise_half = True
        # Under DDP the +delta pass skips the gradient all-reduce; the -delta pass syncs once.
        is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        first_sync = model.no_sync() if is_ddp else contextlib.nullcontext()
        try:
            with handle.phase("plus"), first_sync:
                loss_plus = super().training_step(model, inputs, num_items_in_batch)
            with handle.phase("minus"):
                loss_minus = super().training_step(model, inputs, num_items_in_batch)
        finally:
            self._symnoise_half = False
        return loss_plus + loss_minus

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if getattr(self, "_symnoise_half", False):
            if return_outputs:
                loss, outputs = result
                return loss * 0.5, outputs
            return result * 0.5
        return result


def noisy_trainer_class(base: type) -> type:
    """``NoiseTrainerMixin`` on top of any Trainer class, e.g. ``trl.SFTTrainer``."""
    return type(f"Noisy{base.__name__}", (NoiseTrainerMixin, base), {})


def __getattr__(name: str) -> Any:
    # NoisyTrainer / NoisySFTTrainer are built on first use so importing symnoise stays light.
    if name == "NoisyTrainer":
        from transformers import Trainer

        cls = noisy_trainer_class(Trainer)
        globals()[name] = cls
        return cls
    if name == "NoisySFTTrainer":
        from trl import SFTTrainer

        cls = noisy_trainer_class(SFTTrainer)
        globals()[name] = cls
        return cls
    raise AttributeError(name)
