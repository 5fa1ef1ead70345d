"""Noise in TRL's preference trainers (DPO, KTO): a clean reference in TRL's three reference
modes, per-sequence scaling, noise_on, SymNoise pairs in concat and sequential modes."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import WORDS, make_model, make_tokenizer
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer, KTOConfig

from symnoise import NoiseConfig, noisy_embeddings
from symnoise.trainer import NoisyDPOTrainer, NoisyKTOTrainer, noisy_trainer_class

TOK = make_tokenizer()


def _rows(n: int = 8, seed: int = 0) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    words = lambda lo, hi: " ".join(rnd.choices(WORDS, k=rnd.randint(lo, hi)))  # noqa: E731
    return [{"prompt": words(2, 6) + " .", "chosen": words(1, 5), "rejected": words(1, 5)}
            for _ in range(n)]


def _trainer(tmp_path, noise=None, *, mode="peft", kto=False, trainer_cls=None, steps=2,
             dtype=torch.float32, **extra):
    model = make_model(vocab_size=len(TOK)).to(dtype)
    if mode == "peft":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                 lora_dropout=0.0))
    ref = make_model(vocab_size=len(TOK)).to(dtype) if mode == "ref_model" else None
    opts = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                max_steps=steps, learning_rate=1e-2, report_to=[], save_strategy="no", seed=0,
                use_cpu=True, disable_tqdm=True, precompute_ref_log_probs=mode == "precompute")
    opts.update(extra)
    args = KTOConfig(**opts) if kto else DPOConfig(**opts)
    cls = trainer_cls or (NoisyKTOTrainer if kto else NoisyDPOTrainer)
    kw = {} if trainer_cls is DPOTrainer else {"noise_config": noise}
    return cls(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(_rows()),
               processing_class=TOK, **kw)


def _log_probs(trainer, mode):
    """Train; return (reference log-probs, policy log-probs) as each forward produced them."""
    seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def spy(module, args, out):
        seen[torch.is_grad_enabled()].append(out.log_probs.detach().clone())

    module = trainer.ref_model if mode == "ref_model" else trainer.model
    module.register_forward_hook(spy)
    if mode == "ref_model":
        trainer.model.register_forward_hook(spy)
    trainer.train()
    if mode == "precompute":
        ds = trainer.train_dataset
        return [torch.tensor(ds["ref_chosen_logps"]), torch.tensor(ds["ref_rejected_logps"])], \
            seen[True]
    return seen[False], seen[True]


@pytest.mark.parametrize("mode", ["peft", "ref_model", "precompute", "kto-peft"])
@pytest.mark.parametrize("method", ["uniform", "symnoise"])
def test_reference_log_probs_are_clean_policy_noised(tmp_path, mode, method):
    kto, mode = mode.startswith("kto"), mode.removeprefix("kto-")
    # KTO's KL-free loss: its default adds a no-grad policy pass (the KL baseline)
    kw = {"kto": True, "loss_type": "apo_zero_unpaired"} if kto else {}
    ref0, pol0 = _log_probs(_trainer(tmp_path, None, mode=mode, **kw), mode)
    noise = NoiseConfig(method=method, alpha=5.0)
    ref1, pol1 = _log_probs(_trainer(tmp_path, noise, mode=mode, **kw), mode)
    assert len(ref0) == len(ref1) >= 2 and pol0 and pol1
    assert all(torch.equal(a, b) for a, b in zip(ref0, ref1, strict=True))  # bitwise
    assert not torch.equal(pol0[0], pol1[0])


def test_transformers_neftune_noises_the_reference(tmp_path):
    """Why ours exists: TRL's DPO with transformers' neftune_noise_alpha, a PEFT model and
    no ref_model noises the reference pass (the adapter is off, the hook is not)."""
    ref0, _ = _log_probs(_trainer(tmp_path, trainer_cls=DPOTrainer), "peft")
    ref1, _ = _log_probs(_trainer(tmp_path, trainer_cls=DPOTrainer, neftune_noise_alpha=5.0),
                         "peft")
    assert len(ref0) == len(ref1) >= 2
    assert not any(torch.equal(a, b) for a, b in zip(ref0, ref1, strict=True))


class _EmbeddingSpy(TrainerCallback):
    """Records, for each noised forward, the clean and noised embeddings and the model's
    attention mask and labels (registered after the noise hook, so it sees its output)."""

    def __init__(self, trainer):
        self.trainer, self.rows = trainer, []

    def on_train_begin(self, args, state, control, **kwargs):
        model = self.trainer.model
        emb, kw = model.get_input_embeddings(), {}
        model.register_forward_pre_hook(lambda m, a, k: kw.update(k), with_kwargs=True)

        def spy(module, args, out):
            if module.training and torch.is_grad_enabled():
                clean = torch.nn.functional.embedding(args[0], module.weight).detach()
                self.rows.append((clean, out.detach().clone(), kw["attention_mask"],
                                  kw["labels"]))
        emb.register_forward_hook(spy)


def _spied(tmp_path, noise, **kw):
    trainer = _trainer(tmp_path, noise, steps=1, **kw)
    spy = _EmbeddingSpy(trainer)
    trainer.add_callback(spy)
    trainer.train()
    assert spy.rows
    return spy.rows


@pytest.mark.parametrize("noise_on", ["all", "response"])
def test_each_row_scaled_by_its_own_length_no_noise_on_padding(tmp_path, noise_on):
    noise = NoiseConfig(method="bernoulli", alpha=5.0, noise_on=noise_on)  # |delta| is exact
    clean, noised, mask, labels = _spied(tmp_path, noise)[0]
    d, length = clean.shape[-1], mask.sum(dim=1, keepdim=True).float()
    assert len(set(length.flatten().tolist())) > 1  # rows of different real lengths
    want = 5.0 / torch.sqrt(3 * length * d) * mask  # alpha / sqrt(L d), norm matched
    if noise_on == "response":  # completion tokens of chosen and rejected rows only
        want = want * (labels != -100)
        assert (labels != -100).sum(dim=1).min() > 0
    assert torch.allclose((noised - clean).abs(), want.unsqueeze(-1).expand_as(clean),
                          atol=1e-6)


def test_symnoise_rows_sum_to_twice_the_clean_embeddings(tmp_path):
    clean, noised, mask, _ = _spied(tmp_path, NoiseConfig(method="symnoise", alpha=5.0))[0]
    pairs = clean.shape[0] // 4  # [C; C; R; R]: chosen block, then rejected block
    for block in (clean, noised):
        assert block.shape[0] == 4 * pairs
    for start in (0, 2 * pairs):  # chosen, rejected
        plus, minus = noised[start:start + pairs], noised[start + pairs:start + 2 * pairs]
        x = clean[start:start + pairs]
        assert torch.equal(x, clean[start + pairs:start + 2 * pairs])
        assert torch.allclose(plus + minus, 2 * x, atol=1e-6)
        assert not torch.allclose(plus, x)
    delta = noised - clean  # each sequence its own delta: chosen and rejected differ
    assert not torch.equal(delta[0], delta[2 * pairs]) and not torch.equal(delta[0], delta[1])


def _sgd_step(tmp_path, noise, kto):
    # KTO's default loss has a batch-level KL baseline (the mean over both halves in concat,
    # over each half in sequential); its KL-free loss is compared
    extra = {"loss_type": "apo_zero_unpaired"} if kto else {}
    trainer = _trainer(tmp_path, noise, mode="ref_model", kto=kto, steps=1, optim="sgd",
                       dtype=torch.float64, **extra,
                       learning_rate=1.0, max_grad_norm=0.0, lr_scheduler_type="constant")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    return {n: before[n] - p.detach() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("kto", [False, True], ids=["dpo", "kto"])
def test_symnoise_concat_and_sequential_same_gradient(tmp_path, kto):
    modes = [_sgd_step(tmp_path, NoiseConfig(method="symnoise", alpha=5.0, symmetric_mode=m),
                       kto) for m in ("concat", "sequential")]
    clean = _sgd_step(tmp_path, None, kto)
    def rel(a, b):  # the whole step's difference relative to its size
        diff = sum(float((a[n] - b[n]).norm() ** 2) for n in a) ** 0.5
        return diff / sum(float(a[n].norm() ** 2) for n in a) ** 0.5

    assert rel(modes[0], modes[1]) < 1e-6  # rounding (TRL's fused head is float32 inside)
    assert rel(modes[0], clean) > 1e-2


def test_unpaired_preference_batches_are_refused():
    model = make_model(vocab_size=len(TOK))
    ids = torch.randint(3, len(TOK), (4, 5))
    with noisy_embeddings(model, NoiseConfig(method="symnoise", alpha=5.0)) as handle:
        handle.pair_blocks = 2
        with pytest.raises(ValueError, match="different examples"):
            model(input_ids=ids)  # [c; r; c'; r'] is not [C; C; R; R]
        with pytest.raises(ValueError, match="2 block"):
            model(input_ids=ids[:3])
        paired = torch.cat([ids[:1], ids[:1], ids[1:2], ids[1:2]])
        assert model(input_ids=paired).logits.shape[0] == 4


def test_other_trl_trainers_are_refused():
    from trl.experimental.orpo import ORPOTrainer

    with pytest.raises(ValueError, match="ORPOTrainer.*supported: Trainer, SFTTrainer, "
                                         "DPOTrainer, KTOTrainer"):
        noisy_trainer_class(ORPOTrainer)


@pytest.mark.parametrize("stage, lora", [("dpo", True), ("dpo", False), ("kto", True)])
def test_train_stage_dpo_end_to_end(tmp_path, stage, lora):
    import json

    from typer.testing import CliRunner

    from symnoise.cli import app

    model_dir, data = tmp_path / "tiny", tmp_path / "pairs.json"
    make_model(vocab_size=len(TOK)).save_pretrained(model_dir)
    TOK.save_pretrained(model_dir)
    data.write_text(json.dumps(_rows(24)))
    out = tmp_path / "run"
    args = ["train", "--stage", stage, "--beta", "0.2", "--data", str(data), "--model",
            str(model_dir), "--method", "symnoise", "--max-steps", "2", "--batch-size", "4",
            "--lr", "1e-2", "--output-dir", str(out), "--no-progress",
            "--lora" if lora else "--full"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["global_step"] == 2
    assert info["config"]["stage"] == stage and info["config"]["beta"] == 0.2
    assert info["format"] == "trl_standard" and "format=trl_standard" in result.output
    assert info["data"]["train_examples_used"] + info["data"]["eval_examples"] == 24
    assert info["data"]["dropped_fully_truncated"] == 0
    assert info["noise_measured"]["noised_forwards"] >= 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["step"] == 2 and "train_loss" in r and "entropy" in r for r in rows)  # TRL's
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out)
    start = AutoModelForCausalLM.from_pretrained(model_dir)
    assert not torch.equal(trained.model.layers[0].self_attn.q_proj.weight,
                           start.model.layers[0].self_attn.q_proj.weight)
    again = CliRunner().invoke(app, [*args, "--resume"])  # a finished run is left as is
    assert again.exit_code == 0 and "already complete" in again.output
