"""kvstore's benchmark suite: ``python -m benchmarks [--quick] [--only S1,S4]``.

Not part of the installed package and not run by the tests or CI; see BENCHMARKS.md.
"""
