"""``python -m metatwin_functions``."""

from .cli import main

raise SystemExit(main())
