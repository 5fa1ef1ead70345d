"""symnoise: noisy-embedding instruction fine-tuning (SymNoise, NEFTune, Gaussian, Bernoulli).

Quick use::

    from symnoise import NoiseConfig, NoisyTrainer
    trainer = NoisyTrainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                           noise_config=NoiseConfig(method="symnoise", alpha=5))
    trainer.train()

or, in a custom loop::

    from symnoise import noisy_embeddings, pair_batch
    with noisy_embeddings(model, NoiseConfig("symnoise", 5)):
        loss = model(**pair_batch(batch)).loss
"""

from __future__ import annotations

from typing import Any

from .config import NoiseConfig, TrainConfig
from .noise import METHODS, canonical_method, perturb

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "NoiseConfig",
    "TrainConfig",
    "canonical_method",
    "perturb",
    "noisy_embeddings",
    "pair_batch",
    "NoiseTrainerMixin",
    "NoisyTrainer",
    "NoisySFTTrainer",
    "noisy_trainer_class",
    "train",
    "__version__",
]

_LAZY = {
    "noisy_embeddings": "integration",
    "pair_batch": "integration",
    "NoiseTrainerMixin": "integration",
    "NoisyTrainer": "integration",
    "NoisySFTTrainer": "integration",
    "noisy_trainer_class": "integration",
    "NoiseHandle": "integration",
    "train": "train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'symnoise' has no attribute {name!r}")
