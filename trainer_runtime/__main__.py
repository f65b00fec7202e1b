"""``python -m trainer_runtime --spec job.json [--resume]``: run one training job (see `runner`)."""

from __future__ import annotations

from trainer_runtime.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
