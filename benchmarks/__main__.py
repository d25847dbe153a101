"""``python -m benchmarks [--quick] [--only S1,S4] [--latency-ms 20]``: run the suite."""

from .runner import main

raise SystemExit(main())
