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

import importlib
from typing import Any

from .config import NoiseConfig, TrainConfig
from .integration import noisy_embeddings
from .noise import perturb
from .pairing import pair_batch

__version__ = "0.1.0"

# The README's Python API. The Trainer classes need transformers: they are taken from
# symnoise.trainer on first use, so ``import symnoise`` loads torch only. (A whole run is
# ``symnoise.train.train``: a package attribute ``train`` would clash with the module.)
_TRAINER = ("NoisyTrainer", "NoisySFTTrainer", "NoisyDPOTrainer", "NoisyKTOTrainer",
            "noisy_trainer_class")
__all__ = ["NoiseConfig", "TrainConfig", "perturb", "noisy_embeddings", "pair_batch", *_TRAINER]


def __getattr__(name: str) -> Any:
    if name not in _TRAINER:
        raise AttributeError(f"module 'symnoise' has no attribute {name!r}")
    return getattr(importlib.import_module(".trainer", __name__), name)
