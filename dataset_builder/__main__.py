"""``python -m dataset_builder``: see :mod:`dataset_builder.cli`."""

from dataset_builder.cli import main

raise SystemExit(main())
