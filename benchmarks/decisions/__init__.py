"""The parts of ``bench_decisions.py`` (see its docstring): ``common`` (constants, records,
clocks), ``subjects`` (the contenders), ``measure`` (passes and the run) and ``report``."""
