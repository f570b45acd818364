"""Public names of nnlab without a docstring: a Griffe extension (fails `mkdocs build --strict`) and a script.

Public names are those in `__all__` of nnlab and of its public subpackages; a module without
`__all__` contributes what it defines itself (no leading underscore, not imported). A public
class contributes its public methods and properties. Constants count too: Griffe reads a string
literal right under an assignment as the attribute's docstring.

    python tools/check_docstrings.py     # lists the names, exit code 1 when there are any

In mkdocs.yml the same check runs as an extension of the Python handler
(`tools/check_docstrings.py:PublicDocstrings`); each name is a warning, which `--strict` turns
into a failed build.
"""

from __future__ import annotations

import sys
from typing import Any

import griffe

PACKAGE = "nnlab"
MODULES = (
    "nnlab",
    "nnlab.nn",
    "nnlab.train",
    "nnlab.data",
    "nnlab.optim",
    "nnlab.losses",
    "nnlab.study",
    "nnlab.sweep",
    "nnlab.checkpoint",
    "nnlab.evaluation",
    "nnlab.report",
    "nnlab.configs",
)


def _target(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    """What an alias (a re-export) points to; None when it leaves the package (e.g. a jax object)."""
    try:
        return obj.final_target if isinstance(obj, griffe.Alias) else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _lacks_doc(obj: griffe.Object | griffe.Alias) -> bool:
    return obj.docstring is None or not obj.docstring.value.strip()


def undocumented(pkg: griffe.Module) -> list[str]:
    """Dotted names, as the user writes them, of the public objects of `MODULES` without a docstring."""
    lacking: list[str] = []
    seen: set[str] = set()
    for modname in MODULES:
        module = pkg if modname == pkg.path else _target(pkg[modname.removeprefix(pkg.path + ".")])
        if module is None:
            continue
        if _lacks_doc(module):
            lacking.append(modname)
        for name, member in module.members.items():
            if not member.is_public or member.is_module:
                continue
            target = _target(member)
            if target is None or not target.path.startswith(PACKAGE + ".") or target.path in seen:
                continue
            seen.add(target.path)
            shown = f"{modname}.{name}"
            if _lacks_doc(target):
                lacking.append(shown)
            if target.is_class:
                for attr, sub in target.members.items():
                    if attr.startswith("_") or sub.is_alias or not (sub.is_function or _is_property(sub)):
                        continue
                    if _lacks_doc(sub):
                        lacking.append(f"{shown}.{attr}")
    return lacking


def _is_property(obj: griffe.Object | griffe.Alias) -> bool:
    return "property" in getattr(obj, "labels", set())


class PublicDocstrings(griffe.Extension):
    """Warn once per public name of nnlab without a docstring, after the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != PACKAGE:
            return
        for name in undocumented(pkg):
            griffe.logger.warning(f"public name without a docstring: {name}")


def main() -> int:
    pkg = griffe.load(PACKAGE, search_paths=["."], resolve_aliases=True)
    if not isinstance(pkg, griffe.Module):
        raise TypeError(f"griffe.load({PACKAGE!r}): expected a module, got {type(pkg).__name__}")
    lacking = undocumented(pkg)
    for name in lacking:
        print(name)
    sys.stdout.flush()
    print(f"{len(lacking)} public names of nnlab without a docstring", file=sys.stderr)
    return 1 if lacking else 0


if __name__ == "__main__":
    sys.exit(main())
