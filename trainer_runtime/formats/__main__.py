"""``python -m trainer_runtime.formats <validate|import|convert|split> ...`` (see `cli`)."""

from trainer_runtime.formats.cli import main

raise SystemExit(main())
