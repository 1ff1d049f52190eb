"""Tiny Hugging Face models for the text tests, built locally (no download): a word-level
tokenizer trained on the given texts, a random-initialised GPT-2 or BERT classifier, saved with
``save_pretrained`` (safetensors, tokenizer.json)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Words every tokenizer knows besides its texts' own.
VOCABULARY = (
    "the patient was seen today for pain in the left knee and given rest ice and a follow up "
    "visit my order arrived late and the parcel was broken please refund the card account"
)


def word_tokenizer(texts: Sequence[str], *, bos: bool = True):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    vocab = Tokenizer(models.WordLevel(unk_token="<unk>"))
    vocab.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<pad>", "<unk>", "<s>"]
    vocab.train_from_iterator(
        [*texts, VOCABULARY], trainers.WordLevelTrainer(special_tokens=specials)
    )
    extra = {"bos_token": "<s>"} if bos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=vocab, pad_token="<pad>", unk_token="<unk>", **extra
    )


def tiny_gpt2(
    folder: Path,
    texts: Sequence[str] = (),
    *,
    seed: int = 0,
    train_on: Sequence[str] = (),
    steps: int = 0,
) -> Path:
    """A 1-layer GPT-2 (16-wide) saved to ``folder``; ``steps`` of Adam on ``train_on`` first."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = word_tokenizer([*texts, *train_on])
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    if steps and train_on:
        _train(model, tokenizer, train_on, steps)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _train(model, tokenizer, texts: Sequence[str], steps: int) -> None:  # type: ignore[no-untyped-def]
    """Full-batch Adam on the texts, one torch thread (the 2-core machine is shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = tokenizer([f"<s> {t}" for t in texts], padding=True, return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            loss = model(**batch, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)


def tiny_bert_classifier(folder: Path, texts: Sequence[str] = (), *, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = word_tokenizer(texts, bos=False)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=3,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
