"""The parts of ``bench_http.py`` (see its docstring): ``common`` (constants, helpers),
``servers`` (uvicorn subprocesses and their stores), ``bare_app`` (the bare FastAPI route),
``client`` (the load driver processes), ``phases`` (peak and half load) and ``report``.

Not ``http``: ``benchmarks/`` is on ``sys.path`` when a script runs, and a package of that name
would hide the standard library's."""
