"""Several seeds of one recipe trained as one batched model (``torch.func`` + ``vmap``).

Each seed keeps its own weights, optimizer moments, data order, gradient clipping and
dropout masks; the group only shares kernel launches.  That pays when one seed's step
leaves the device idle (small models, launch-bound GPU steps); on a CPU it buys nothing.

What a seed gets in a group, and what it does not:

* initial weights and data order: exactly those of ``fine_tune`` for that seed (the seed
  is set before each model is built; the order uses the same seeded generator);
* the update: stabench's AdamW on the stacked tensors is elementwise, hence per seed;
  clipping uses each seed's own global norm;
* dropout: masks come from the group's random stream (``vmap(randomness="different")``),
  so a seed in a group is statistically like, but not identical to, the same seed alone.
  With dropout 0 a seed alone, in a group and in ``fine_tune`` follow the same trajectory
  up to float rounding.  Batching changes a run's numbers: results trained in a group must
  not share a store key with solo runs.

Not supported (raises): Mixout, re-initialisation, layer-wise lr decay, torch.compile, hooks.  On a
CPU, torch has no vmap rule for the SDPA flash kernel and loops over the seeds inside
attention (it warns); eager attention avoids that.  Measured on an H200 (BERT-large, batch
16 x 128, bf16), a group of 4 ran 26 seed-steps/s: no better than two eager processes and
half of one CUDA-graphed process, so the plugin trains seeds one per process.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch
import transformers
from torch.func import functional_call, stack_module_state, vmap

from . import data as data_lib
from . import models
from .optim import AdamW, decay_groups, make_scheduler, no_decay_names
from .recipes import Recipe


# Families whose padding mask _traceable_mask gives the form they take, in transformers 4 and 5
# (checked: a group's losses equal each seed's own).  DeBERTa-v2 reads the mask as 0/1 weights,
# ModernBERT and DistilBERT (4, SDPA) build theirs otherwise.
FAMILIES = ("bert", "roberta", "xlm-roberta", "electra")


class SeedGroup:
    """``len(seeds)`` independent fine-tuning runs advanced together, one vmapped step at a time."""

    def __init__(self, source: models.ModelSource, num_labels: int, recipe: Recipe, seeds: list[int], *,
                 total_steps: int, device: str = "cpu"):
        if not seeds:
            raise ValueError("seeds is empty; expected at least one seed")
        unsupported = [name for name, on in (("mixout", recipe.mixout), ("reinit_layers", recipe.reinit_layers),
                                             ("layerwise_lr_decay", recipe.layerwise_lr_decay < 1),
                                             ("compile", recipe.compile), ("hook", recipe.hook)) if on]
        if unsupported:
            raise ValueError(f"recipe field {unsupported[0]} is not supported in a batched seed group; "
                             f"train those seeds one at a time")
        model_type = models.load_config(source).model_type
        if model_type not in FAMILIES:
            raise ValueError(f"model type {model_type!r} is not supported in a batched seed group; supported: "
                             f"{', '.join(FAMILIES)}")
        self.recipe, self.seeds, self.device = recipe, list(seeds), torch.device(device)
        self.total_steps = total_steps
        # vmap over CUDA SDPA fails in torch 2.11 ("LSE is not correctly aligned", H200, bf16):
        # the group uses eager attention there unless the recipe names one.
        attention = recipe.attention or ("eager" if self.device.type == "cuda" else None)
        replicas = []
        for seed in self.seeds:
            transformers.set_seed(seed)  # as fine_tune: head init follows the seed
            model = models.load_model(source, num_labels, recipe.dropout, attention)
            replicas.append(model.to(self.device).train())
        self.params, self.buffers = stack_module_state(replicas)  # leaves: [seeds, *shape]
        self.template = copy.deepcopy(replicas[0]).to("meta")
        self.template.train()
        exempt = no_decay_names(replicas[0])
        del replicas
        groups = decay_groups(self.params.items(), exempt, recipe.weight_decay, recipe.lr)
        self.optimizer = AdamW.for_recipe(groups, recipe)
        self.scheduler = make_scheduler(self.optimizer, recipe.schedule, recipe.warmup, total_steps)

    def orders(self, n_examples: int) -> list[list[list[int]]]:
        """Each seed's batches of example indices, exactly as fine_tune draws them."""
        return [data_lib.train_order(n_examples, self.total_steps, self.recipe.batch_size,
                                     torch.Generator().manual_seed(seed)) for seed in self.seeds]

    def collate(self, encoded: data_lib.Encoded, indices_per_seed: list[list[int]], pad_id: int) -> dict:
        """One batch per seed, padded to a common length (padding is masked), stacked on dim 0;
        without the recipe's ``token_types`` every token is type 0, as in ``fine_tune``."""
        if not self.recipe.token_types:
            encoded = dataclasses.replace(encoded, token_type_ids=None)
        batches = [data_lib.collate(encoded, indices, pad_id, self.recipe.pad_to_multiple_of)
                   for indices in indices_per_seed]
        if len({len(b["labels"]) for b in batches}) > 1:
            raise ValueError("seeds in a group need equal batch sizes at every step (use full batches)")
        length = max(b["input_ids"].shape[1] for b in batches)
        stacked = {}
        for key in batches[0]:
            tensors = [b[key] for b in batches]
            if key != "labels":
                fill = pad_id if key == "input_ids" else 0
                tensors = [torch.nn.functional.pad(t, (0, length - t.shape[1]), value=fill) for t in tensors]
            stacked[key] = torch.stack(tensors).to(self.device, non_blocking=True)
        return stacked

    def step(self, batch: dict[str, torch.Tensor], autocast: contextlib.AbstractContextManager | None = None
             ) -> torch.Tensor:
        """One optimizer step for every seed; returns the per-seed losses (on device)."""
        mask = _traceable_mask(batch["attention_mask"])
        inputs = {k: v for k, v in batch.items() if k != "attention_mask"}

        def loss_of(params, buffers, attention_mask, kwargs):
            return functional_call(self.template, (params, buffers), (),
                                   {**kwargs, "attention_mask": attention_mask}).loss

        with autocast or contextlib.nullcontext():
            losses = vmap(loss_of, randomness="different")(self.params, self.buffers, mask, inputs)
        losses.sum().backward()  # seeds share no weights: each gets its own gradient
        if self.recipe.grad_clip is not None:
            self.clip_(self.recipe.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses.detach()

    @torch.no_grad()
    def clip_(self, max_norm: float) -> torch.Tensor:
        """clip_grad_norm_ per seed: each seed's gradients scaled by its own global L2 norm."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        n = len(self.seeds)
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(n, -1), dim=1) for g in grads])  # [tensors, seeds]
        total = torch.linalg.vector_norm(norms, dim=0)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, [coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype) for g in grads])
        return total

    def train(self, encoded: data_lib.Encoded, pad_id: int,
              autocast: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
        """All steps of every seed; returns the losses as [steps, seeds] (on CPU)."""
        orders = self.orders(len(encoded))
        losses = [self.step(self.collate(encoded, [order[i] for order in orders], pad_id), autocast)
                  for i in range(self.total_steps)]
        return torch.stack(losses).float().cpu()


def _traceable_mask(mask: torch.Tensor) -> torch.Tensor:
    """The [seeds, batch, length] padding mask in a form the model turns into attention's
    additive mask without branching on its values (which vmap cannot trace; transformers'
    SDPA mask builders skip an all-ones mask).  In the families of :data:`FAMILIES`,
    transformers 5 takes a ready-made 4-D mask as is (0 or the dtype minimum, the builder's
    values); transformers 4 refuses 4-D masks and converts a 3-D one arithmetically."""
    if models.transformers_major() >= 5:
        return (1.0 - mask[:, :, None, None, :].float()) * torch.finfo(torch.float32).min
    return mask[:, :, None, :]
