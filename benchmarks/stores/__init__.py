"""The parts of ``bench_stores.py`` (see its docstring): ``common`` (constants, records,
helpers), ``servers``, ``subjects`` (the rows), ``measure``, ``memory`` and ``report``."""
