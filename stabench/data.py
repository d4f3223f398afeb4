"""Tokenised examples and seeded, dynamically padded batches.

Tokenisation is cached per (data fingerprint, tokenizer content, max length), so a 25-seed study
tokenises once per process; datasets' own map cache keeps file-backed data across processes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import torch

from .tasks import TaskData


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One split as unpadded token-id tensors (int64), one per example."""

    input_ids: tuple[torch.Tensor, ...]
    token_type_ids: tuple[torch.Tensor, ...] | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(data: TaskData, tokenizer, max_length: int, token_types: bool = True) -> tuple[Encoded, Encoded]:
    """The train and eval splits tokenised with truncation to ``max_length``; without
    ``token_types`` the model sees none, so it embeds type 0 for every token (a pair's second
    sentence too), as Mosbach et al.'s script ran BERT."""
    key = (data.task.name, data.fingerprint, _tokenizer_fingerprint(tokenizer), max_length)
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # the most recently used last
    else:
        if len(_CACHE) >= _CACHED_ENCODINGS:  # a long session of many subsamples would otherwise keep them all
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = (_encode_split(data, data.train, tokenizer, max_length),
                       _encode_split(data, data.eval, tokenizer, max_length))
    if not token_types:
        return tuple(dataclasses.replace(split, token_type_ids=None) for split in _CACHE[key])
    return _CACHE[key]


_CACHE: dict[tuple, tuple[Encoded, Encoded]] = {}
_CACHED_ENCODINGS = 32  # a suite's tasks x tokenizers x lengths; the least recently used goes first


def _tokenizer_fingerprint(tokenizer) -> str:
    """What the tokenizer does, not its name, which two revisions of a hub id (or a folder whose
    tokenizer was saved again) share."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the truncation and padding that the last call set
        text = json.dumps({k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")},
                          sort_keys=True)
    else:
        settings = sorted((name, str(value)) for name, value in tokenizer.init_kwargs.items())
        text = repr((sorted(tokenizer.get_vocab().items()), settings))
    return hashlib.sha256(f"{text}\ntruncation_side={tokenizer.truncation_side}".encode()).hexdigest()


def _encode_split(data: TaskData, split, tokenizer, max_length: int) -> Encoded:
    columns = data.task.text_columns

    def tokenize(batch):
        texts = [batch[c] for c in columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    tokenized = split.map(tokenize, batched=True, desc=None)
    input_ids = tuple(torch.tensor(ids, dtype=torch.long) for ids in tokenized["input_ids"])
    token_type_ids = None
    if "token_type_ids" in tokenized.column_names:
        token_type_ids = tuple(torch.tensor(ids, dtype=torch.long) for ids in tokenized["token_type_ids"])
    labels = torch.tensor(split[data.task.label_column], dtype=torch.long)
    return Encoded(input_ids, token_type_ids, labels)


def check_token_types(splits: tuple[Encoded, ...], config, model_name: str) -> None:
    """Token types the model can embed: a tokenizer that marks a pair's second sentence as type 1
    beside a model with one type (RoBERTa's ``type_vocab_size=1``) is otherwise an IndexError deep
    in torch.  A model without token-type embeddings (``type_vocab_size=0``, DeBERTa-v3) ignores them."""
    types = getattr(config, "type_vocab_size", None)
    if not isinstance(types, int) or types <= 0:
        return
    highest = max((int(ids.max()) for split in splits for ids in split.token_type_ids or () if ids.numel()), default=0)
    if highest >= types:
        raise ValueError(f"model {model_name!r}: its tokenizer gives token type {highest} (a sentence pair's second "
                         f"sentence) but its config has type_vocab_size={types}; save the model's own tokenizer with "
                         f"it (RoBERTa's gives no token types), or use a single-sentence task")


def collate(encoded: Encoded, indices: list[int] | torch.Tensor, pad_id: int,
            pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest example (rounded up to a bucket when asked)."""
    indices = [int(i) for i in indices]
    longest = max(len(encoded.input_ids[i]) for i in indices)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch_ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), longest), dtype=torch.long)
    types = torch.zeros((len(indices), longest), dtype=torch.long) if encoded.token_type_ids else None
    for row, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        batch_ids[row, :n] = encoded.input_ids[i]
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = encoded.token_type_ids[i]
    batch = {"input_ids": batch_ids, "attention_mask": mask, "labels": encoded.labels[indices]}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def train_order(n_examples: int, steps: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Index batches for ``steps`` steps: a fresh seeded permutation each epoch, last partial batch kept."""
    batches: list[list[int]] = []
    while len(batches) < steps:
        permutation = torch.randperm(n_examples, generator=generator).tolist()
        batches.extend(permutation[i:i + batch_size] for i in range(0, n_examples, batch_size))
    return batches[:steps]
