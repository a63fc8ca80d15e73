"""The public surface is exactly ``__all__``, and every name in it is importable."""

import allowance


def test_all_lists_every_public_name() -> None:
    public = {n for n in dir(allowance) if not n.startswith("_")} - {
        # submodules that importing the package pulls in
        "aio",
        "clock",
        "errors",
        "limiter",
        "policy",
        "types",
        "engine",
        "messages",
        "ops",
        "policy_schema",
        "state",
        "stores",
        "validation",
        "windows",
        "yamlsource",
    }
    assert sorted(public) == sorted(n for n in allowance.__all__ if n != "__version__")


def test_errors_form_one_tree() -> None:
    for name in allowance.__all__:
        obj = getattr(allowance, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, allowance.AllowanceError), name
