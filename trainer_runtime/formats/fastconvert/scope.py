"""What the fast label writer handles (`FAST_TASKS`) and `FastPathUnsupported`, which sends the
caller back to the reference converter. See the package docstring and docs/architecture.md.
"""

from __future__ import annotations

FAST_TASKS = ("object_detection", "instance_segmentation")


class FastPathUnsupported(Exception):
    """The dataset or task needs the reference converter (the message says why)."""
