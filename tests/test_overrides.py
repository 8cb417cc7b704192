"""Every method of ours that overrides a Lightning base method says so (``@override``),
and every ``@override`` names a method the base really has: a misspelt hook fails here
instead of silently never being called."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import gan_mn


def _our_classes() -> list[type]:
    classes = []
    for info in pkgutil.walk_packages(gan_mn.__path__, "gan_mn."):
        if info.name.endswith(("triton.kernels", "__main__")):  # CUDA only; runs the CLI
            continue
        module = importlib.import_module(info.name)
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                    if c.__module__ == module.__name__]
    return classes


def _function(value: object) -> object:
    return value.fget if isinstance(value, property) else value


def test_overrides_are_marked_and_real() -> None:
    unmarked, unreal = [], []
    for cls in _our_classes():
        bases = [b for b in cls.__mro__[1:] if b is not object]
        for name, value in vars(cls).items():
            fn = _function(value)
            if not inspect.isfunction(fn) or name in ("__init__", "__init_subclass__"):
                continue
            overrides = any(name in vars(b) for b in bases)
            marked = getattr(fn, "__override__", False) or getattr(value, "__override__", False)
            lightning = any(b.__module__.startswith("lightning.") for b in bases)
            if overrides and not marked and lightning:  # hooks of callbacks, modules, CLI
                unmarked.append(f"{cls.__qualname__}.{name}")
            if marked and not overrides:
                unreal.append(f"{cls.__qualname__}.{name}")
    assert not unmarked, f"override without @override: {unmarked}"
    assert not unreal, f"@override of nothing (misspelt hook?): {unreal}"
