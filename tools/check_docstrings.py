"""Validate the numpydoc docstrings of skinvert's public objects.

    python -m tools.check_docstrings [--list]      (from the repository root)

Public objects are the names in ``__all__`` of the public modules below, and the
public methods and properties a class defines itself (those inherited from
scikit-learn are not checked). The checks and the name exclusions are read from
``[tool.numpydoc_validation]`` in pyproject.toml, as ``python -m numpydoc lint``
reads them. Exit status 1 when any docstring fails a check.
"""

import argparse
import importlib
import inspect
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = (
    "skinvert",
    "skinvert.activations",
    "skinvert.analysis",
    "skinvert.datasets",
    "skinvert.generator",
    "skinvert.inverters",
    "skinvert.io",
    "skinvert.metrics",
)


def public_objects():
    """Yield ``(qualified name, object)`` for every public function, class and method."""
    seen = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants carry no docstring of their own
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            qualname = f"{obj.__module__}.{obj.__qualname__}"
            yield qualname, obj
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, (staticmethod, classmethod)):
                        value = value.__func__
                    if inspect.isfunction(value) or isinstance(value, property):
                        yield f"{qualname}.{attr}", value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the checked names only")
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    from numpydoc.hooks.validate_docstrings import parse_config
    from numpydoc.validate import validate

    config = parse_config(ROOT)
    checks, exclude = config["checks"], config["exclude"]
    n_bad = 0
    for name, _ in public_objects():
        if args.list:
            print(name)
            continue
        if exclude is not None and exclude.search(name):
            continue
        result = validate(name)
        errors = [(code, msg) for code, msg in result["errors"] if code in checks]
        for code, msg in errors:
            print(f"{result['file']}:{result['file_line']}: {name}: {code} {msg}")
        n_bad += bool(errors)
    if not args.list:
        print(f"{n_bad} public object(s) with docstring errors", file=sys.stderr)
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
