"""A faithful port of the reference Task2Vec for language models, for tests
and benchmarks only.

It follows the reference implementation of the diversity coefficient (the
``Task2Vec`` class of Miranda, Lee et al., itself adapted from Achille et
al.'s Task2Vec): ``_finetune_classifier`` (AdamW on the ``lm_head``
parameters only, lr 5e-5, eps 1e-8, weight decay 1e-4, DataLoader batches of
8 in order, next-token loss ``get_lm_loss`` with ``ignore_index``, the whole
network in the backward pass), ``montecarlo_fisher_autoregressive`` (labels
``multinomial(softmax(logits[i]))`` per sequence at every position, the loss
shifts them one position against the logits, the squared gradient of each
minibatch's mean loss accumulated in ``p.grad2_acc`` and divided by the number
of minibatches) and ``extract_embedding`` (per-output-row means of
``grad2_acc`` of every module ``weight`` except ``lm_head``, in
``named_modules`` order).

Two changes make it usable on our probes, neither of which alters the
estimator: the model is any module with an ``lm_head`` and a forward
returning ``.logits`` (:class:`TinyGPTAsReference` adapts a ``TinyGPT``),
and ``ignore_index`` is a parameter (the reference hard-codes GPT-2's
pad/eos id 50256). The caller unties the head first (``untie``) and seeds
the global generator (``seed`` argument) before the Fisher, as the reference
relies on the caller's global seed.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader


def get_lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The reference's loss: logits[:, :-1] against targets[:, 1:]."""
    assert logits.dim() == 3
    loss = nn.CrossEntropyLoss(ignore_index=ignore_index)
    logits = logits[:, :-1, :]
    logits = logits.transpose(1, 2)
    targets = targets[:, 1:]
    return loss(logits, targets)


class TinyGPTAsReference(nn.Module):
    """A TinyGPT seen as the reference sees a GPT-2: ``lm_head`` and
    ``forward(input_ids, attention_mask, labels) -> .logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.lm_head = model.head

    def forward(self, input_ids: torch.Tensor, attention_mask: Any = None, labels: Any = None) -> Any:
        return SimpleNamespace(logits=self.model(input_ids))


def untie(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose ``lm_head`` has its own weight."""
    m = copy.deepcopy(model)
    m.lm_head.weight = nn.Parameter(m.lm_head.weight.detach().clone())
    cfg = getattr(m, "config", None)
    if cfg is not None and hasattr(cfg, "tie_word_embeddings"):
        cfg.tie_word_embeddings = False
    return m


class ReferenceTask2Vec:
    """The reference ``Task2Vec`` restricted to its autoregressive Monte-Carlo path."""

    def __init__(self, model: nn.Module, loader_batch_size: int = 8, ignore_index: int = 50256) -> None:
        self.model = copy.deepcopy(model)
        self.model.train()
        self.loader_batch_size = loader_batch_size
        self.ignore_index = ignore_index
        self.loss_fn = get_lm_loss

    def embed(
        self,
        dataset: list[dict[str, torch.Tensor]],
        epochs: int = 10,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.0001,
        fisher_epochs: int = 1,
        seed: int = 0,
    ) -> np.ndarray:
        self._finetune_classifier(dataset, epochs=epochs, learning_rate=learning_rate, weight_decay=weight_decay)
        torch.manual_seed(seed)
        self.montecarlo_fisher_autoregressive(dataset, epochs=fisher_epochs)
        return self.extract_embedding(self.model)

    def _finetune_classifier(
        self,
        dataset: list[dict[str, torch.Tensor]],
        epochs: int = 5,
        learning_rate: float = 5e-5,
        adam_epsilon: float = 1e-8,
        weight_decay: float = 0.0001,
    ) -> float:
        device = next(self.model.parameters()).device
        data_loader = DataLoader(dataset, batch_size=self.loader_batch_size, num_workers=0)
        optimizer_grouped_parameters = [
            {"params": [p for p in self.model.lm_head.parameters()], "weight_decay": weight_decay},
        ]
        optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=learning_rate, eps=adam_epsilon)
        self.model.train()
        loss = torch.tensor(-1.0)
        for _epoch in range(epochs):
            for _step, batch in enumerate(data_loader):
                optimizer.zero_grad()
                inputs = {
                    "input_ids": batch["input_ids"].to(device),
                    "attention_mask": batch["attention_mask"].to(device),
                }
                logits = self.model(**inputs, labels=inputs["input_ids"]).logits
                loss = self.loss_fn(logits, inputs["input_ids"], ignore_index=self.ignore_index)
                loss.backward()
                optimizer.step()
        return float(loss.item())

    def montecarlo_fisher_autoregressive(self, dataset: list[dict[str, torch.Tensor]], epochs: int = 1) -> None:
        data_loader = DataLoader(
            dataset, shuffle=False, batch_size=self.loader_batch_size, num_workers=0, drop_last=False
        )
        device = next(self.model.parameters()).device
        for p in self.model.parameters():
            p.grad2_acc = torch.zeros_like(p.data)  # type: ignore[attr-defined]
            p.grad_counter = 0  # type: ignore[attr-defined]
        for _k in range(epochs):
            for _step, batch in enumerate(data_loader):
                inputs = {
                    "input_ids": batch["input_ids"].to(device),
                    "attention_mask": batch["attention_mask"].to(device),
                }
                logits = self.model(**inputs, labels=inputs["input_ids"]).logits
                softmax_output = torch.softmax(logits, dim=-1)
                lst = [
                    torch.multinomial(softmax_output[i, :, :], 1).detach().view(-1) for i in range(len(softmax_output))
                ]
                target = torch.stack(lst, dim=0)
                loss = self.loss_fn(logits, target, ignore_index=self.ignore_index)
                self.model.zero_grad()
                loss.backward()
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad2_acc += p.grad.data**2  # type: ignore[attr-defined]
                        p.grad_counter += 1  # type: ignore[attr-defined]
        for p in self.model.parameters():
            if p.grad_counter == 0:  # type: ignore[attr-defined]
                del p.grad2_acc  # type: ignore[attr-defined]
            else:
                p.grad2_acc /= p.grad_counter  # type: ignore[attr-defined]

    def extract_embedding(self, model: nn.Module) -> np.ndarray:
        hess = []
        for _name, module in model.named_modules():
            if module is model.lm_head:
                continue
            if hasattr(module, "weight") and hasattr(module.weight, "grad2_acc"):
                grad2 = module.weight.grad2_acc.cpu().float().detach().numpy()
                filterwise_hess = grad2.reshape(grad2.shape[0], -1).mean(axis=1)
                hess.append(filterwise_hess)
        return np.concatenate(hess)


def as_reference_dataset(ids: np.ndarray, attention_mask: np.ndarray | None = None) -> list[dict[str, torch.Tensor]]:
    """Token rows as the reference's tokenized batch (dicts of input_ids and attention_mask)."""
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    m = torch.ones_like(x) if attention_mask is None else torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))
    return [{"input_ids": x[i], "attention_mask": m[i]} for i in range(x.shape[0])]


def reference_embedding(
    model: nn.Module,
    ids: np.ndarray,
    *,
    epochs: int = 10,
    seed: int = 0,
    ignore_index: int = -100,
    attention_mask: np.ndarray | None = None,
    loader_batch_size: int = 8,
    fisher_epochs: int = 1,
    learning_rate: float = 5e-5,
) -> np.ndarray:
    """The reference embedding of ``ids`` by ``model`` (a TinyGPT or a Hugging
    Face causal LM), head untied; global generator seeded with ``seed`` before
    the Fisher."""
    if hasattr(model, "hidden") and hasattr(model, "head"):
        model = TinyGPTAsReference(copy.deepcopy(model))
    t2v = ReferenceTask2Vec(untie(model), loader_batch_size=loader_batch_size, ignore_index=ignore_index)
    return t2v.embed(
        as_reference_dataset(ids, attention_mask),
        epochs=epochs,
        fisher_epochs=fisher_epochs,
        seed=seed,
        learning_rate=learning_rate,
    )
