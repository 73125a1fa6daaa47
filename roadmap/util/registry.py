"""One registry type for every set of named things the tool knows: roadmaps, their steps, block
kinds, the papers' results, plugins, latency runtimes and data sources.

A :class:`Registry` is strict: a name must pass its check (a Python identifier unless it says
otherwise), a second registration of a name is refused with the name of the module that owns
it, and an unknown name is refused with the closest known one and the full list. (A registry
of facts, such as the papers' results, may accept the very same value twice.)

Two ways of being lazy keep ``roadmap --help`` and a mistyped name fast:

- a registry can have a *loader*, called once before the first lookup or listing (the
  installed roadmap packages load through their entry points this way);
- a name can be *declared* before it is defined: ``declare("repvgg", "pkg.block")`` promises
  that importing ``pkg.block`` registers ``repvgg``, and the import happens on first use (a
  block kind's module imports torch; naming it does not).

Tests take a :func:`snapshot` of every registry and :func:`restore` it, so what a test
registers never leaks into the next one.
"""

from __future__ import annotations

import importlib
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from roadmap.errors import RoadmapError
from roadmap.util.names import did_you_mean

T = TypeVar("T")

_ALL: weakref.WeakSet[Registry] = weakref.WeakSet()
MAX_ECHO = 100  # a name longer than this is shortened in messages: never echo a user's megabyte


def shown(text: str) -> str:
    """A user's string as messages quote it: at most :data:`MAX_ECHO` characters."""
    text = str(text)
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}... ({len(text):,} characters)"


class Registry(Generic[T]):
    """Named values of one kind (see the module docstring).

    Args:
        what: what a value is, for messages (``"block kind"``).
        loader: called once before the first lookup or listing, to register what is installed.
        check_name: whether a name is acceptable (default: a Python identifier).
        rule: what the check asks, for the message (``"a Python identifier"``).
        same_again: accept a second registration of a name with an equal value.
        where: after the name in messages (``" in roadmap 'repvit'"``).
    """

    def __init__(
        self,
        what: str,
        *,
        loader: Callable[[], None] | None = None,
        check_name: Callable[[str], bool] = str.isidentifier,
        rule: str = "a Python identifier (letters, digits, _)",
        same_again: bool = False,
        where: str = "",
    ) -> None:
        self.what = what
        self._loader = loader
        self._check_name = check_name
        self._rule = rule
        self._same_again = same_again
        self._where = where
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        self._declared: dict[str, str] = {}  # name -> module whose import registers it
        self._order: list[str] = []  # names as first declared or registered
        self._state = "new" if loader else "loaded"  # new -> loading -> loaded
        _ALL.add(self)

    # --- registering -------------------------------------------------------------------------

    def register(self, name: str, value: T, owner: str = "") -> T:
        """File ``value`` under ``name``; returns it.

        Args:
            name: its name (must pass the registry's check, and be new).
            value: the thing.
            owner: who registers it (a module name), quoted when someone else takes the name.
        """
        self.load()  # what is installed comes first, whoever registers next
        if not isinstance(name, str) or not self._check_name(name):
            raise RoadmapError(f"{self.what} name {shown(name)!r} must be {self._rule}")
        if name in self._items:
            if self._same_again and self._items[name] == value:
                return self._items[name]
            by = f" (by {self._owners[name]})" if self._owners.get(name) else ""
            raise RoadmapError(
                f"{self.what} {name!r} is already registered{self._where}{by}; pick a new name"
            )
        self._items[name] = value
        self._owners[name] = owner
        self._declared.pop(name, None)
        if name not in self._order:
            self._order.append(name)
        return value

    def declare(self, name: str, module: str) -> None:
        """Promise that importing ``module`` registers ``name`` (imported on first use)."""
        self.load()
        if name in self._items or name in self._declared:
            if self._declared.get(name) == module:
                return
            raise RoadmapError(
                f"{self.what} {name!r} is already registered{self._where}; pick a new name"
            )
        if not self._check_name(name):
            raise RoadmapError(f"{self.what} name {shown(name)!r} must be {self._rule}")
        self._declared[name] = module
        if name not in self._order:
            self._order.append(name)

    # --- looking up --------------------------------------------------------------------------

    def get(self, name: str, *, hint: str = "") -> T:
        """The value called ``name``; an unknown name raises, says what was meant and lists the
        known ones (``hint`` is added to that message)."""
        self.load()
        if name not in self._items and name in self._declared:
            self._define(name)
        if name not in self._items:
            known = self.names()
            listed = ", ".join(known) if known else "none"
            raise RoadmapError(
                f"unknown {self.what} {shown(name)!r}{self._where}"
                f"{did_you_mean(str(name), known)}; "
                f"known: {listed}{hint}"
            )
        return self._items[name]

    def find(self, name: str) -> T | None:
        """The value called ``name``, or None (nothing is raised, nothing declared is imported)."""
        self.load()
        return self._items.get(name)

    def names(self) -> list[str]:
        """Every name, registered or declared, in the order first declared or registered."""
        self.load()
        return [n for n in self._order if n in self._items or n in self._declared]

    def values(self) -> list[T]:
        """Every value, in registration order (declared names are defined first)."""
        self.load()
        for name in list(self._declared):
            if name in self._declared:  # one module may register several declared names
                self._define(name)
        return [self._items[n] for n in self.names() if n in self._items]

    def owner(self, name: str) -> str:
        """The module that registered ``name`` ("" when unknown)."""
        return self._owners.get(name, "")

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test undoing a registration; nothing else needs it)."""
        self._items.pop(name, None)
        self._owners.pop(name, None)
        self._declared.pop(name, None)
        if name in self._order:
            self._order.remove(name)

    # --- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        """Run the loader once (a lookup made while it runs sees what is registered so far)."""
        if self._state != "new" or self._loader is None:
            return
        self._state = "loading"
        try:
            self._loader()
            self._state = "loaded"
        finally:
            if self._state == "loading":  # the loader failed: try again next time
                self._state = "new"

    def reload(self) -> None:
        """Run the loader again on the next lookup (what is registered stays)."""
        if self._loader is not None:
            self._state = "new"

    def _define(self, name: str) -> None:
        module = self._declared[name]
        try:
            with importing(module):
                importlib.import_module(module)
        except RoadmapError:
            raise
        except (Exception, SystemExit) as e:
            raise RoadmapError(
                f"{self.what} {name!r}: importing {module} failed: {type(e).__name__}: {e}"
            ) from e
        if name not in self._items:
            raise RoadmapError(
                f"{self.what} {name!r}: {module} was imported but did not register it"
            )

    # --- tests -------------------------------------------------------------------------------

    def _snapshot(self) -> tuple:
        saved = (self._items, self._owners, self._declared, self._order)
        return (*(type(part)(part) for part in saved), self._state)

    def _restore(self, saved: tuple) -> None:
        items, owners, declared, order, state = saved
        self._items, self._owners, self._declared = dict(items), dict(owners), dict(declared)
        self._order, self._state = list(order), state


def owners() -> set[str]:
    """Every module that registered something in any registry now."""
    return {owner for registry in list(_ALL) for owner in registry._owners.values() if owner}


def snapshot() -> dict[Registry, tuple]:
    """Every registry's contents now (for :func:`restore`)."""
    return {registry: registry._snapshot() for registry in list(_ALL)}


def restore(saved: dict[Registry, tuple]) -> None:
    """Put every registry back as :func:`snapshot` found it; registries made since are emptied."""
    for registry in list(_ALL):
        if registry in saved:
            registry._restore(saved[registry])
        else:
            registry._restore(({}, {}, {}, [], "new" if registry._loader else "loaded"))


# Someone's code that takes longer than this to import is told about (it keeps running:
# plugins are trusted code, and a slow one may be doing something legitimate).
WATCHDOG_S = 5.0


class ExitCalled(Exception):
    """Someone's code called ``os._exit`` while it was being imported."""


@contextmanager
def importing(what: str) -> Iterator[None]:
    """Import someone's code (a plugin, an installed package's entry point) under a watchdog:
    a line on stderr when it is still importing after :data:`WATCHDOG_S`, and ``os._exit``
    (which ends the process with no word, past every ``try``) turned into an error."""
    import os
    import threading

    def still_importing() -> None:
        print(
            f"roadmap: {what} is still importing after {WATCHDOG_S:g} s "
            "(a loop at import? Ctrl-C stops it)",
            file=sys.stderr,
            flush=True,
        )

    def refuse_exit(code: int) -> None:
        raise ExitCalled(f"it called os._exit({code}), which would end roadmap mid-command")

    timer = threading.Timer(WATCHDOG_S, still_importing)
    timer.daemon = True
    real_exit, os._exit = os._exit, refuse_exit
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        os._exit = real_exit
