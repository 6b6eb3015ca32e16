"""Reproducible experiments built from the library's probes.

- **QA-SFT on fact worlds** (Ye et al., "60 Data Points are Sufficient to
  Fine-Tune LLMs for Question-Answering", arXiv 2409.15825):
  :class:`QASFTConfig`, :func:`run_qa_sft`, :class:`QASFTResult`
  (module :mod:`dataprobes.experiments.qa_sft`, needs PyTorch to run;
  docs/math.md, "QA-SFT on fact worlds").

Names are resolved lazily so that importing this package never imports
PyTorch.
"""

from __future__ import annotations

from .._lazy import lazy_names

_WHERE = {
    "QASFTConfig": "qa_sft",
    "QASFTResult": "qa_sft",
    "run_qa_sft": "qa_sft",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_names(__name__, globals(), _WHERE)
