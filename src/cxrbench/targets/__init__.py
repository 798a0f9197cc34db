"""Target kinds by name: the `kind:` string of a benchmark's target -> its `TargetKind` object.

Each module of this package defines one kind and registers it with `@register`; the package's modules are imported
when a kind is first looked up, so a new kind is one module here (plus its test), found without a list to edit.
A plugin or test may `register` a kind of its own the same way.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from cxrbench.errors import SpecError

if TYPE_CHECKING:
    from cxrbench.targets.base import Target, TargetKind

KindT = TypeVar("KindT", bound="type[TargetKind]")

_KINDS: dict[str, TargetKind] = {}
_scanned = False


def register(cls: KindT) -> KindT:
    """Class decorator: make the kind `cls.name` known (one instance serves every target of that kind)."""
    _KINDS[cls.name] = cls()
    return cls


def _scan() -> None:
    global _scanned
    if not _scanned:
        _scanned = True
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")


def kind_names() -> tuple[str, ...]:
    """Every known kind, in alphabetical order."""
    _scan()
    return tuple(sorted(_KINDS))


def target_kind(name: str, where: str = "target") -> TargetKind:
    """The kind called `name`; an unknown name fails naming `where` and the closest known kind."""
    _scan()
    if name not in _KINDS:
        close = difflib.get_close_matches(str(name), _KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"{where}: kind '{name}' is not one of the target kinds {', '.join(kind_names())}.{hint}")
    return _KINDS[name]


def scored_targets(targets: Sequence[Target]) -> tuple[Target, ...]:
    """The targets a summary scores and the tables show, one per result column (a mask target's structures each)."""
    return tuple(s for t in targets for s in target_kind(t.kind).scored_targets(t))


__all__ = ["kind_names", "register", "scored_targets", "target_kind"]
