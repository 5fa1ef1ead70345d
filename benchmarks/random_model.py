"""Save a randomly initialised Llama-architecture model for timing runs without a download.

Step time and memory depend on a model's shapes, not on its weights, so a GPU machine with
no hub access can time the methods on a random model of a real model's shape:

    python benchmarks/random_model.py --shape smollm2-135m --tokenizer TOK_DIR --out /tmp/m135
    python benchmarks/train_overhead.py --model /tmp/m135 --device cuda --bf16

``--tokenizer`` is any saved Hugging Face tokenizer folder (its vocabulary sets the
embedding size); save the default model's with
``load_model_and_tokenizer("smollm2")[1].save_pretrained(DIR)``.
"""

from __future__ import annotations

import argparse

#: Shapes (LlamaConfig fields). smollm2-135m is SmolLM2-135M's; llama-1b is a 1.0B-parameter
#: Llama of Llama-3.2-1B's width and depth (its vocabulary comes from --tokenizer).
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=64),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    ap.add_argument("--tokenizer", required=True, help="a saved tokenizer folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    config = LlamaConfig(vocab_size=len(tok), tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **SHAPES[args.shape])
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.shape}: {n / 1e6:.1f}M parameters, vocabulary {len(tok)} -> {args.out}")


if __name__ == "__main__":
    main()
