"""What runs inside a training or inference process, installable alone in a training container.

`formats` (DICE, importers, converters: pure Python), `storage` (local folders / S3, the dual-store
client), `adapters` (one per framework behind a registry), `runner` (a job spec in, progress events
out), `checkpoints`, `mlflow_logger`, `weights` (pretrained-weights resolution) and `inference`
(workers, evaluation, exports). It imports none of `agent`, `tools` or `web`; `formats`, `storage`
and `spec` never import torch, so the server can use them. Contracts: docs/architecture.md.
"""

__all__: list[str] = []
