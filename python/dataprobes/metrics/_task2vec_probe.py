"""Probe adapters for Task2Vec (docs/math.md, "Dataset metrics: Task2Vec").

A probe is split into a *trunk* (token ids -> final hidden states) and an
output *head* (hidden states -> logits). Two kinds are recognised:

- TinyGPT-like modules: a ``head`` module and a ``hidden(idx)`` method
  (:class:`dataprobes.lm.TinyGPT`, or any module exposing the same two names);
- Hugging Face causal LMs: ``get_output_embeddings()`` is the head and the
  base model's ``last_hidden_state`` what it reads.

:func:`prepare_probe` works on a deep copy: a head tied to the input embedding
is untied, every parameter is frozen, the copy is put in eval mode (no
dropout), so the user's probe is never modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class _Trunk(nn.Module):
    """``forward(ids, mask) -> hidden`` of the probe ``m`` (its parameter names
    carry the prefix ``m.``, for ``torch.func.functional_call``)."""

    def __init__(self, m: nn.Module, kind: str) -> None:
        super().__init__()
        self.m = m
        self.kind = kind

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "tinygpt":
            out: torch.Tensor = self.m.hidden(ids)  # type: ignore[operator]
            return out
        base: Any = getattr(self.m, "base_model", None)
        if base is not None and base is not self.m:
            res = base(input_ids=ids, attention_mask=mask)
            h = res.last_hidden_state if hasattr(res, "last_hidden_state") else res[0]
        else:
            res = self.m(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            h = res.hidden_states[-1]
        return h


@dataclass
class Probe:
    """A prepared copy of a probe: ``trunk`` (a module computing the final
    hidden states), ``head`` (the untied output head), the embedded weights
    (every module ``weight`` but the head's, in ``named_modules`` order) and
    the limits its inputs must respect."""

    model: nn.Module
    trunk: _Trunk
    head: nn.Module
    names: tuple[str, ...]
    weights: tuple[nn.Parameter, ...]
    vocab_size: int
    max_len: int | None
    kind: str
    device: torch.device

    def trunk_param_names(self) -> tuple[str, ...]:
        """Names of :attr:`weights` inside :attr:`trunk` (``functional_call`` keys)."""
        lookup = {id(p): n for n, p in self.trunk.named_parameters(remove_duplicate=False)}
        return tuple(lookup[id(p)] for p in self.weights)


def probe_kind(probe: Any) -> str:
    """``"tinygpt"`` or ``"hf"``; ``TypeError`` for anything else, ``ValueError``
    for a Hugging Face model without an output head."""
    if not isinstance(probe, nn.Module):
        raise TypeError(
            f"probe must be a torch nn.Module (TinyGPT or a Hugging Face causal LM), got {type(probe).__name__}"
        )
    if callable(getattr(probe, "hidden", None)) and isinstance(getattr(probe, "head", None), nn.Module):
        return "tinygpt"
    get_out = getattr(probe, "get_output_embeddings", None)
    if callable(get_out):
        if get_out() is None:
            raise ValueError(
                f"probe ({type(probe).__name__}) has no output head (get_output_embeddings() is None): "
                "pass a causal LM with a language-modelling head (e.g. GPT2LMHeadModel, not GPT2Model)"
            )
        return "hf"
    raise ValueError(
        f"probe ({type(probe).__name__}) has no output head: it needs either a `head` module and a "
        "`hidden(idx)` method (like dataprobes.lm.TinyGPT) or get_output_embeddings() (a Hugging Face causal LM)"
    )


def _max_len(model: nn.Module, kind: str) -> int | None:
    cfg = getattr(model, "config", None)
    for attr in ("max_len", "n_positions", "max_position_embeddings"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(model, "max_len", None)
    return v if isinstance(v, int) and v > 0 else None


def _vocab_size(model: nn.Module, kind: str, head: nn.Module) -> int:
    if kind == "hf":
        emb = model.get_input_embeddings()  # type: ignore[operator]
        n = getattr(emb, "num_embeddings", None)
        if isinstance(n, int):
            return n
    cfg = getattr(model, "config", None)
    v = getattr(cfg, "vocab_size", None)
    if isinstance(v, int) and v > 0:
        return v
    emb = getattr(model, "tok_emb", None)
    if isinstance(emb, nn.Embedding):
        return emb.num_embeddings
    out = getattr(head, "out_features", None)
    if isinstance(out, int):
        return out
    raise ValueError("cannot tell the probe's vocabulary size (no config.vocab_size, embedding or head size)")


def prepare_probe(probe: Any, device: Any = None) -> Probe:
    """A frozen, untied, eval-mode deep copy of ``probe`` on ``device`` (the
    probe's own device when ``None``)."""
    kind = probe_kind(probe)
    model: nn.Module = copy.deepcopy(probe)
    if device is None:
        first = next(iter(model.parameters()), None)
        dev = first.device if first is not None else torch.device("cpu")
    else:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
        if dev.type == "meta":
            raise ValueError("device 'meta' holds no values: pass a real device (e.g. 'cpu' or 'cuda')")
    model.to(dev)
    model.eval()
    if kind == "tinygpt":
        head: nn.Module = model.head  # type: ignore[assignment]
    else:
        head = model.get_output_embeddings()  # type: ignore[operator]
    head_params = {id(p) for p in head.parameters()}
    if not head_params:
        raise ValueError("the probe's output head has no parameters to fine-tune")
    # untie: the head gets its own copies of any tensor it shares with the trunk
    trunk_params = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if not _in_module(model, n, head)}
    for name, p in list(head.named_parameters(recurse=True)):
        if id(p) in trunk_params:
            owner = head.get_submodule(name.rpartition(".")[0]) if "." in name else head
            setattr(owner, name.rpartition(".")[2], nn.Parameter(p.detach().clone()))
    if kind == "hf":
        cfg = getattr(model, "config", None)
        if cfg is not None and hasattr(cfg, "tie_word_embeddings"):
            try:
                cfg.tie_word_embeddings = False  # never re-tied by a later tie_weights()
            except Exception:  # noqa: BLE001 - a read-only config keeps its flag; the copy is untied anyway
                pass
    for p in model.parameters():
        p.requires_grad_(False)
    names: list[str] = []
    weights: list[nn.Parameter] = []
    for name, mod in model.named_modules():
        if mod is head or _in_module(model, name, head):
            continue
        w = getattr(mod, "weight", None)
        if isinstance(w, nn.Parameter) and w.dim() >= 1 and w.numel() > 0:
            names.append(name)
            weights.append(w)
    if not weights:
        raise ValueError("the probe has no weights outside its output head to take a Fisher of")
    trunk = _Trunk(model, kind)
    return Probe(
        model=model,
        trunk=trunk,
        head=head,
        names=tuple(names),
        weights=tuple(weights),
        vocab_size=_vocab_size(model, kind, head),
        max_len=_max_len(model, kind),
        kind=kind,
        device=dev,
    )


def _in_module(model: nn.Module, name: str, head: nn.Module) -> bool:
    """Whether the parameter or module ``name`` of ``model`` lies inside ``head``."""
    parts = name.split(".")
    for k in range(1, len(parts) + 1):
        try:
            sub = model.get_submodule(".".join(parts[:k]))
        except AttributeError:
            return False
        if sub is head:
            return True
    return False
