"""What runs inside a training process: dataset formats, storage, (later) adapters and checkpoints.

This package imports none of `agent`, `tools` or `web`, so it can be installed alone in a
training container. `trainer_runtime.formats` and `trainer_runtime.storage` never import torch.
"""

__all__: list[str] = []
