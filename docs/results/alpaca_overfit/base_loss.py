"""Clean held-out loss of the model before fine-tuning (step 0 of every curve).

Same held-out rows (the first 64 of heldout.json), template, max length, collator and
evaluation batch (8) as the grid's runs, through transformers' Trainer.evaluate.

    PYTHONPATH=src python docs/results/alpaca_overfit/base_loss.py /work/runs/alpaca_overfit_data/heldout.json
"""

from __future__ import annotations

import sys
import tempfile


def main(heldout: str, n: int = 64) -> None:
    from transformers import Trainer, TrainingArguments

    from symnoise.data import PaddingCollator, prepare_dataset
    from symnoise.models import load_model_and_tokenizer

    model, tok, _, _ = load_model_and_tokenizer("smollm2")
    prepared = prepare_dataset(heldout, tok, fmt="alpaca", template="alpaca", max_length=128,
                               max_examples=n)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_eval_batch_size=8, report_to=[],
                                 remove_unused_columns=False, prediction_loss_only=True,
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, eval_dataset=prepared.features,
                          data_collator=PaddingCollator(tok.pad_token_id))
        print({"examples": len(prepared.features), **trainer.evaluate()})


if __name__ == "__main__":
    main(sys.argv[1])
