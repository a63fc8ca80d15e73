"""The public surface is exactly ``__all__``, and every name in it is importable."""

from types import ModuleType

import allowance


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name in dir(allowance)
        if not name.startswith("_") and not isinstance(getattr(allowance, name), ModuleType)
    }
    assert sorted(public) == sorted(n for n in allowance.__all__ if n != "__version__")


def test_errors_form_one_tree() -> None:
    for name in allowance.__all__:
        obj = getattr(allowance, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, allowance.AllowanceError), name
