"""Noise in Hugging Face's ``Trainer`` and TRL's trainers: :class:`NoiseTrainerMixin` (``Trainer``,
``SFTTrainer``) and :class:`PreferenceNoiseMixin` (``DPOTrainer``, ``KTOTrainer``), and the
classes built with them by :func:`noisy_trainer_class`.

The noise generator's state is saved with every checkpoint (``symnoise_noise_rng.pt``, next
to the Trainer's RNG state) and restored on resume, so a resumed run draws the same noise.
``sequential`` SymNoise skips the gradient sync of the +delta pass under DDP and FSDP; under
DeepSpeed it is refused (accelerate steps the engine after every backward); ``concat`` works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import Trainer
from trl import DPOTrainer, KTOTrainer, SFTTrainer

from .config import NoiseConfig
from .integration import NoiseHandle, noisy_embeddings
from .pairing import pair_batch

__all__ = ["NoiseTrainerMixin", "PreferenceNoiseMixin", "NoisySFTTrainer", "NoisyTrainer",
           "NoisyDPOTrainer", "NoisyKTOTrainer", "first_pass_no_sync", "noisy_trainer_class"]

logger = logging.getLogger(__name__)
NOISE_RNG_FILE = "symnoise_noise_rng.pt"  # symnoise_noise_rng_<rank>.pt with several processes


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def _is_fsdp1(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # a torch built without distributed
        return False
    return isinstance(model, FullyShardedDataParallel)


@contextlib.contextmanager
def _no_gradient_sync(model: Any) -> Iterator[None]:
    """FSDP2 (``fully_shard``) has no ``no_sync``: turn the reduce-scatter off, then back."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def first_pass_no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    """Context for the +delta pass of sequential SymNoise: no gradient sync under DDP and
    FSDP (the -delta pass syncs the summed gradient once); a no-op otherwise."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel) or _is_fsdp1(model):
        return model.no_sync()
    if callable(getattr(model, "set_requires_gradient_sync", None)):  # FSDP2 FSDPModule
        return _no_gradient_sync(model)
    return contextlib.nullcontext()


def _uses_deepspeed(trainer: Any) -> bool:
    if getattr(trainer, "is_deepspeed_enabled", False):
        return True
    kind = getattr(getattr(trainer, "accelerator", None), "distributed_type", None)
    return str(getattr(kind, "value", kind)).upper() == "DEEPSPEED"


class NoiseTrainerMixin:
    """Mixin for ``transformers.Trainer`` subclasses (TRL's ``SFTTrainer`` included).

    Pass ``noise_config=NoiseConfig(...)``. During ``train()`` the model's embeddings are
    noised; SymNoise batches are paired (concat) or run as a +delta and a -delta pass
    (sequential) so that each example is trained at ``X + delta`` and ``X - delta`` with the
    loss averaged over both. Evaluation and prediction see no noise. After ``train()``,
    :attr:`noise_summary` holds :meth:`NoiseHandle.summary` of the run.
    """

    pair_blocks = 1  # concat SymNoise: row blocks paired separately (pair_batch's blocks)

    def __init__(self, *args: Any, noise_config: NoiseConfig | None = None, **kwargs: Any):
        self.noise_config = noise_config or NoiseConfig(method="none", alpha=0.0)
        self.noise_handle: NoiseHandle | None = None
        self.noise_summary: dict[str, Any] | None = None
        super().__init__(*args, **kwargs)
        args_obj = getattr(self, "args", None)
        if getattr(args_obj, "neftune_noise_alpha", None) and self.noise_config.active:
            raise ValueError(
                "both the Trainer's neftune_noise_alpha and a symnoise NoiseConfig are set; "
                "use one (method='uniform' reproduces NEFTune)"
            )

    def _check_noise_backend(self, cfg: NoiseConfig) -> None:
        if cfg.active and cfg.symmetric and cfg.symmetric_mode == "sequential" \
                and _uses_deepspeed(self):
            raise ValueError(
                "symnoise symmetric_mode='sequential' is not supported under DeepSpeed: "
                "accelerate steps the DeepSpeed engine after every backward, so the +delta "
                "and -delta passes would become two optimizer steps. Use "
                "symmetric_mode='concat' (one forward over [X+delta; X-delta])."
            )

    def train(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        cfg = self.noise_config
        if cfg.seed is None:  # the caller's config stays as given
            cfg = dataclasses.replace(cfg, seed=int(getattr(self.args, "seed", 0)))
        self._check_noise_backend(cfg)
        with noisy_embeddings(_unwrap(self.model), cfg) as handle:
            self.noise_handle, handle.pair_blocks = handle, self.pair_blocks
            try:
                return super().train(*args, **kwargs)
            finally:
                self.noise_summary = handle.summary()
                self.noise_handle = None

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None):  # type: ignore[override]
        cfg = self.noise_config
        handle = self.noise_handle
        if handle is None or not cfg.active:
            return super().training_step(model, inputs, num_items_in_batch)
        if cfg.symmetric and cfg.symmetric_mode == "concat":
            inputs = self._pair(inputs)
            if num_items_in_batch is not None:
                num_items_in_batch = num_items_in_batch * 2
        handle.labels_hint = self._labels_hint(inputs)  # in case compute_loss pops them
        try:
            if cfg.symmetric and cfg.symmetric_mode == "sequential":
                return self._sequential_step(model, inputs, num_items_in_batch, handle)
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            handle.labels_hint = None

    def _pair(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return pair_batch(inputs, self.pair_blocks)

    def _labels_hint(self, inputs: dict[str, Any]) -> torch.Tensor | None:
        return inputs.get("labels")

    def _sequential_step(self, model, inputs, num_items_in_batch, handle: NoiseHandle):
        """Two passes into the same gradient, each loss weighted 1/2; under DDP/FSDP the
        +delta pass skips the gradient sync and the -delta pass syncs once."""
        self._symnoise_half = True
        try:
            with handle.phase("plus"), first_pass_no_sync(model):
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
        if not getattr(self, "_symnoise_half", False):
            return result
        return (result[0] * 0.5, result[1]) if return_outputs else result * 0.5

    # -- checkpoints: the noise stream is saved and restored with the Trainer's RNG state
    def _noise_rng_path(self, folder: str) -> str:
        rank, world = getattr(self.args, "process_index", 0), getattr(self.args, "world_size", 1)
        name = f"symnoise_noise_rng_{rank}.pt" if world > 1 else NOISE_RNG_FILE
        return os.path.join(folder, name)

    def _save_rng_state(self, output_dir):  # type: ignore[override]
        super()._save_rng_state(output_dir)
        if self.noise_handle is not None:
            os.makedirs(output_dir, exist_ok=True)
            torch.save(self.noise_handle.state_dict(), self._noise_rng_path(output_dir))

    def _load_rng_state(self, checkpoint):  # type: ignore[override]
        super()._load_rng_state(checkpoint)
        if checkpoint is None or self.noise_handle is None:
            return
        path = self._noise_rng_path(checkpoint)
        if not os.path.isfile(path):
            logger.warning("no symnoise noise state in %s: the resumed run draws noise from "
                           "the seed again, not where the interrupted run stopped", checkpoint)
            return
        self.noise_handle.load_state_dict(torch.load(path, weights_only=True))


class PreferenceNoiseMixin(NoiseTrainerMixin):
    """Mixin for TRL's ``DPOTrainer`` and ``KTOTrainer``: the policy pass is noised, the
    reference pass never. Each training batch's reference log-probabilities are computed
    first, by TRL's ``compute_ref_log_probs`` with the noise paused (a PEFT model's reference
    is the same module with its adapter off), and handed to TRL's loss as precomputed ones;
    ``precompute_ref_log_probs`` runs the same method. SymNoise pairs each sequence as
    ``[X+delta; X-delta]`` within its block (DPO: chosen rows, then rejected rows)."""

    ref_columns: tuple[str, str] = ("ref_chosen_logps", "ref_rejected_logps")

    def compute_ref_log_probs(self, model, inputs):  # type: ignore[override]
        handle = self.noise_handle
        with handle.paused() if handle is not None else contextlib.nullcontext():
            return super().compute_ref_log_probs(model, inputs)

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None):  # type: ignore[override]
        if self.noise_handle is not None and self.noise_config.active \
                and not self.precompute_ref_logps:
            ref = zip(self.ref_columns, self.compute_ref_log_probs(self.ref_model or model,
                                                                   inputs), strict=True)
            inputs = {**inputs, **{k: v for k, v in ref if v is not None}}
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
        given, self.precompute_ref_logps = self.precompute_ref_logps, \
            self.precompute_ref_logps or self.ref_columns[0] in inputs
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self.precompute_ref_logps = given

    def _pair(self, inputs: dict[str, Any]) -> dict[str, Any]:
        ref = {k: v for k, v in inputs.items() if k in self.ref_columns}  # one per pair
        rest = {k: v for k, v in inputs.items() if k not in ref}
        return {**pair_batch(rest, self.pair_blocks), **pair_batch(ref)}

    def _labels_hint(self, inputs: dict[str, Any]) -> torch.Tensor | None:
        return inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)


_SUPPORTED = {SFTTrainer: NoiseTrainerMixin, DPOTrainer: PreferenceNoiseMixin,
              KTOTrainer: PreferenceNoiseMixin}
_PREFERENCE = {DPOTrainer: {"pair_blocks": 2},
               KTOTrainer: {"ref_columns": ("ref_logps", "ref_KL_logps")}}


def noisy_trainer_class(base: type) -> type:
    """The noise mixin on top of a Trainer class: ``transformers.Trainer`` and its
    subclasses, TRL's ``SFTTrainer``, ``DPOTrainer`` and ``KTOTrainer``. Other TRL trainers
    (GRPO, RLOO, ORPO, ...) are refused: their passes are not known to be noised right."""
    trl_base = next((c for c in base.__mro__ if c.__module__.split(".")[0] == "trl"), None)
    known = next((c for c in _SUPPORTED if trl_base and issubclass(trl_base, c)), None)
    if trl_base is not None and known is None:
        raise ValueError(f"symnoise does not support TRL's {trl_base.__name__} (in "
                         f"{base.__name__}); supported: Trainer, "
                         f"{', '.join(c.__name__ for c in _SUPPORTED)}")
    mixin = _SUPPORTED.get(known, NoiseTrainerMixin)
    return type(f"Noisy{base.__name__}", (mixin, base), dict(_PREFERENCE.get(known, {})))


NoisyTrainer = noisy_trainer_class(Trainer)
NoisySFTTrainer = noisy_trainer_class(SFTTrainer)
NoisyDPOTrainer = noisy_trainer_class(DPOTrainer)
NoisyKTOTrainer = noisy_trainer_class(KTOTrainer)
