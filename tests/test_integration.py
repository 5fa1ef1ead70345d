"""Noise on real (tiny) Hugging Face models: hooks, eval mode, checkpoints, Trainer, PEFT."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_model

from symnoise import NoiseConfig, noisy_embeddings, pair_batch
from symnoise.integration import NoisyTrainer, get_embedding_module, noisy_trainer_class

V = 64


def _batch(b=4, length=10, vocab=V, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    if b > 1:
        mask[1, 7:] = 0
    if b > 3:
        mask[3, 4:] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, :2] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _capture_embeddings(model):
    seen = []
    emb = get_embedding_module(model)
    # registered before the noise hook? no: registered first, so it runs first. Use a
    # hook on the first decoder layer's input instead, which sees the noised embeddings.
    layer = model.model.layers[0]
    h = layer.register_forward_pre_hook(lambda m, a, k: seen.append(a[0] if a else k["hidden_states"]), with_kwargs=True)
    return seen, h, emb


def test_noise_only_in_training_mode_and_padding_untouched():
    model = make_model(V)
    batch = _batch()
    seen, h, emb = _capture_embeddings(model)
    clean = emb(batch["input_ids"]).detach()
    with noisy_embeddings(model, NoiseConfig("gaussian", 5.0, seed=0)) as handle:
        model.train()
        model(**{k: v for k, v in batch.items() if k != "labels"})
        model.eval()
        model(**{k: v for k, v in batch.items() if k != "labels"})
    h.remove()
    noised, evaluated = seen[0].detach(), seen[1].detach()
    assert handle.calls == 1
    torch.testing.assert_close(evaluated, clean)  # eval mode: no noise at all
    pad = batch["attention_mask"] == 0
    torch.testing.assert_close(noised[pad], clean[pad])  # padding: zero noise
    assert (noised[~pad] - clean[~pad]).abs().min() >= 0  # sanity
    assert not torch.allclose(noised[~pad], clean[~pad])
    # per-sequence norm: mean token noise norm ~ alpha/sqrt(L d) * sqrt(d/3) ... check ratio
    lengths = batch["attention_mask"].sum(1)
    d = clean.shape[-1]
    for i in range(4):
        n = int(lengths[i])
        per_tok = (noised[i, :n] - clean[i, :n]).pow(2).sum(-1).mean().sqrt()
        expected = 5.0 / (n * d) ** 0.5 * (d / 3) ** 0.5  # rms of N(0,1)/sqrt3 per token
        assert per_tok.item() == pytest.approx(expected, rel=0.35)


def test_exit_leaves_no_trace_and_checkpoint_loads_with_plain_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    model = make_model(V)
    before = copy.deepcopy(model.state_dict())
    emb = get_embedding_module(model)
    hooks_before = (len(emb._forward_hooks), len(model._forward_pre_hooks))
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0)):
        assert len(emb._forward_hooks) == hooks_before[0] + 1
    assert (len(emb._forward_hooks), len(model._forward_pre_hooks)) == hooks_before
    assert type(model).forward is type(make_model(V)).forward
    assert set(model.state_dict()) == set(before)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)


def test_concat_requires_paired_batch():
    model = make_model(V)
    model.train()
    batch = _batch(b=3)
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0)):
        with pytest.raises(ValueError, match="paired batch"):
            model(**batch)
        out = model(**pair_batch(batch))
    assert out.logits.shape[0] == 6


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_concat_and_sequential_give_identical_gradients():
    batch = _batch()
    model_a, model_b = make_model(V, seed=1), make_model(V, seed=1)
    for m in (model_a, model_b):
        m.train()
        m.config.attn_implementation = "eager"
    # concat: one forward over [X+d; X-d]
    with noisy_embeddings(model_a, NoiseConfig("symnoise", 5.0, seed=3)):
        model_a(**pair_batch(batch)).loss.backward()
    # sequential: +d pass then -d pass with the same delta, each loss halved
    with noisy_embeddings(model_b, NoiseConfig("symnoise", 5.0, symmetric_mode="sequential", seed=3)) as h:
        with h.phase("plus"):
            (0.5 * model_b(**batch).loss).backward()
        with h.phase("minus"):
            (0.5 * model_b(**batch).loss).backward()
    ga, gb = _grads(model_a), _grads(model_b)
    assert ga.keys() == gb.keys() and len(ga) > 0
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-4, atol=1e-6)
    # and the gradient really differs from an un-noised one
    model_c = make_model(V, seed=1)
    model_c.train()
    model_c(**batch).loss.backward()
    gc = _grads(model_c)
    assert any(not torch.allclose(ga[k], gc[k], atol=1e-6) for k in ga)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n=16, length=10):
        self.items = []
        for i in range(n):
            b = _batch(1, length, seed=i)
            self.items.append({k: v[0] for k, v in b.items()})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _trainer(tmp_path, noise, model=None, cls=None, **kw):
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, use_cpu=True,
        dataloader_num_workers=0,
    )
    args = TrainingArguments(**{**base, **kw})
    cls = cls or NoisyTrainer
    return cls(model=model or make_model(V, seed=2), args=args, train_dataset=_Rows(),
               eval_dataset=_Rows(8), noise_config=noise)


def test_trainer_pairs_symnoise_batches(tmp_path):
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0))
    rows_seen = []
    h = trainer.model.register_forward_pre_hook(
        lambda m, a, k: rows_seen.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    trainer.train()
    h.remove()
    assert rows_seen == [8, 8]  # batch of 4 doubled to [X+d; X-d]
    assert len(trainer.model._forward_pre_hooks) == 0  # hooks gone after train()
    assert all(isinstance(r["loss"], float) for r in trainer.state.log_history if "loss" in r)


def test_trainer_concat_and_sequential_same_first_step(tmp_path):
    results = {}
    for mode in ("concat", "sequential"):
        model = make_model(V, seed=4)
        tr = _trainer(tmp_path / mode, NoiseConfig("symnoise", 5.0, symmetric_mode=mode, seed=9),
                      model=model, max_steps=1, learning_rate=0.0)
        grads = {}
        hooks = [p.register_hook(lambda g, n=n, grads=grads: grads.__setitem__(n, grads.get(n, 0) + g.clone()))
                 for n, p in model.named_parameters()]
        tr.train()
        for h in hooks:
            h.remove()
        results[mode] = grads
    assert results["concat"].keys() == results["sequential"].keys()
    for k in results["concat"]:
        torch.testing.assert_close(results["concat"][k], results["sequential"][k], rtol=1e-4, atol=1e-6)


def test_trainer_evaluate_is_noise_free(tmp_path):
    model = make_model(V, seed=5)
    trainer = _trainer(tmp_path, NoiseConfig("uniform", 50.0), model=model)
    clean = trainer.evaluate()["eval_loss"]
    with noisy_embeddings(model, NoiseConfig("uniform", 50.0)):
        during = trainer.evaluate()["eval_loss"]
    assert during == pytest.approx(clean, abs=1e-6)


@pytest.mark.parametrize("method", ["uniform", "gaussian", "bernoulli"])
def test_trainer_runs_each_method_with_gradient_checkpointing(tmp_path, method):
    trainer = _trainer(tmp_path, NoiseConfig(method, 5.0), gradient_checkpointing=True)
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss > 0


def test_bf16_autocast_symnoise(tmp_path):
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0), bf16=True)
    out = trainer.train()
    assert out.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))


def test_peft_lora_model_gets_noise_and_merges_cleanly(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(make_model(V, seed=6), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    trainer = _trainer(tmp_path, NoiseConfig("symnoise", 5.0), model=model)
    rows_seen = []
    h = get_embedding_module(model).register_forward_hook(lambda m, a, o: rows_seen.append(o.shape[0]))
    trainer.train()
    h.remove()
    assert rows_seen and all(r == 8 for r in rows_seen)
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "merged")


def test_sft_trainer_mixin(tmp_path):
    trl = pytest.importorskip("trl")
    from conftest import make_tokenizer
    from datasets import Dataset

    tok = make_tokenizer()
    tok.pad_token = tok.eos_token
    ds = Dataset.from_list([{"prompt": "sort the numbers one two", "completion": " one two"}] * 8)
    cfg = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                        report_to=[], use_cpu=True, save_strategy="no", max_length=32)
    cls = noisy_trainer_class(trl.SFTTrainer)
    model = make_model(len(tok), seed=7)
    rows = []
    trainer = cls(model=model, args=cfg, train_dataset=ds, processing_class=tok,
                  noise_config=NoiseConfig("symnoise", 5.0))
    h = model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]), with_kwargs=True)
    trainer.train()
    h.remove()
    assert rows == [8, 8]


def test_model_without_embeddings_is_a_clear_error():
    with pytest.raises(ValueError, match="input embeddings"):
        with noisy_embeddings(torch.nn.Linear(3, 3), NoiseConfig("uniform", 1.0)):
            pass


def test_noise_config_validates():
    with pytest.raises(ValueError, match="-2"):
        NoiseConfig("uniform", -2)
    with pytest.raises(ValueError, match="'both'"):
        NoiseConfig("symnoise", 5, symmetric_mode="both")
    assert NoiseConfig("neftune", 5).method == "uniform"
