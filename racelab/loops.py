"""Loop kinds: build a fresh, unpatched event loop by name.

A *loop kind* is a name (``"selector"``, ``"uvloop"``, ...) bound to a
factory.  :func:`new_loop` returns a new loop of that kind, owned by the
caller; racelab never patches it.  The registry knows every kind racelab
ships, including those that cannot run on this machine (uvloop not
installed, the real IOCP proactor off Windows), so that asking for one
gives a clear reason instead of "unknown kind".

Users add their own kinds with :func:`register_factory`
(``"module:callable"``), for example a loop from another library or a
patched build under investigation.

This module uses only the standard library.
"""

from __future__ import annotations

import asyncio
import importlib
import platform
import selectors
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from racelab.events import Recorder

__all__ = [
    "LoopKind",
    "LoopOptions",
    "LoopUnavailable",
    "available_kinds",
    "get_kind",
    "kind_names",
    "new_loop",
    "register",
    "register_factory",
]


class LoopUnavailable(RuntimeError):
    """The loop kind exists but cannot be built on this machine."""


@dataclass(frozen=True)
class LoopOptions:
    """What a loop factory may use besides its kind.

    Factories take what they understand and ignore the rest: the selector
    loop has no kernel to seed, the emulated proactor uses all of it.
    """

    recorder: Recorder = field(default_factory=lambda: Recorder(False))
    """Where the loop records kernel-level events, if it has any."""
    seed: int = 0
    """Seed for any choice the loop makes at random."""
    kernel: str = "thread"
    """The I/O kernel of emulated proactor kinds (see ``Config.kernel``)."""
    locate: Callable[[bytes], int | None] | None = None
    """``locate(data)``: the payload stream offset at which *data* starts,
    or None; lets a loop record where bytes it discards came from."""
    sync_completion: bool = False
    """Emulated proactor kinds: receives and sends that can complete at
    once do, inside the call, as on Windows (see ``Config``)."""


@dataclass(frozen=True)
class LoopKind:
    """A named way of building an event loop.

    Args:
      name: the kind's name, as given to :func:`new_loop`.
      factory: ``factory(options) -> loop``.
      describe: one line for ``racelab loops``.
      version: ``version() -> str``, the version of what implements it.
      unavailable: ``unavailable() -> str | None``, why this machine cannot
        build it, or None when it can.
      network: what the trial's sockets are: ``"loopback-tcp"``, or
        ``"simulated"`` for kinds that bring an in-memory network.
    """

    name: str
    factory: Callable[[LoopOptions], asyncio.AbstractEventLoop]
    describe: str
    version: Callable[[], str]
    unavailable: Callable[[], str | None] = lambda: None
    network: Callable[[LoopOptions], str] = lambda options: "loopback-tcp"


_registry: dict[str, LoopKind] = {}


def register(kind: LoopKind, *, replace: bool = False) -> None:
    """Add *kind* to the registry.

    Raises:
      ValueError: a kind of that name exists and *replace* is false.
    """
    if kind.name in _registry and not replace:
        raise ValueError(f"loop kind {kind.name!r} is already registered")
    _registry[kind.name] = kind


def register_factory(name: str, target: str, *, replace: bool = False) -> None:
    """Register a loop kind built by ``"module:callable"``.

    The callable is imported when a loop is first built and is called with
    no arguments; it must return a new event loop.

    Raises:
      ValueError: *target* is not of the form ``module:callable``.
    """
    module_name = _split_target(target)[0]

    def load() -> Callable[[], asyncio.AbstractEventLoop]:
        try:
            return resolve(target)
        except LookupError as exc:
            raise LoopUnavailable(str(exc)) from exc

    def unavailable() -> str | None:
        try:
            load()
        except LoopUnavailable as exc:
            return str(exc)
        return None

    def version() -> str:
        module = sys.modules.get(module_name)
        return str(getattr(module, "__version__", "unknown"))

    register(
        LoopKind(
            name=name,
            factory=lambda options: load()(),
            describe=f"user factory {target}",
            version=version,
            unavailable=unavailable,
        ),
        replace=replace,
    )


def _split_target(target: str) -> tuple[str, str]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"factory must be 'module:callable' (got {target!r})"
        )
    return module_name, attr


def resolve(target: str) -> Callable[..., object]:
    """The callable that ``"module:callable"`` names, imported.

    Raises:
      ValueError: *target* is not of that form.
      LookupError: the module or the attribute does not exist (the
        message names which).
    """
    module_name, attr = _split_target(target)
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"cannot load {target}: {exc}") from None
    if not callable(obj):
        raise LookupError(f"cannot load {target}: not callable")
    return obj


def kind_names() -> tuple[str, ...]:
    """Names of every registered kind, available here or not."""
    return tuple(_registry)


def get_kind(name: str) -> LoopKind:
    """The registered kind called *name*.

    A name of the form ``"module:callable"`` registers itself on first
    use, so that a user's factory can be named wherever a kind can (the
    CLI, a config, a sweep's worker processes).

    Raises:
      ValueError: no such kind; the message lists the known ones.
    """
    if name not in _registry and isinstance(name, str) and ":" in name:
        register_factory(name, name)
    try:
        return _registry[name]
    except (KeyError, TypeError):
        rule = names_rule()
        raise ValueError(f"loop must be {rule} (got {name!r})") from None


def names_rule() -> str:
    """What a loop kind's name may be, for error messages."""
    known = ", ".join(repr(n) for n in _registry if ":" not in n)
    return f"one of {known} or 'module:callable'"


def available_kinds() -> tuple[str, ...]:
    """Names of the kinds this machine can build."""
    return tuple(n for n, k in _registry.items() if k.unavailable() is None)


def new_loop(
    name: str, options: LoopOptions | None = None
) -> asyncio.AbstractEventLoop:
    """Build a fresh event loop of kind *name*; the caller closes it.

    The loop is not installed as the current loop of any thread.

    Raises:
      ValueError: *name* is not a registered kind.
      LoopUnavailable: the kind cannot be built on this machine.
    """
    kind = get_kind(name)
    reason = kind.unavailable()
    if reason is not None:
        raise LoopUnavailable(f"loop kind {name!r} is unavailable: {reason}")
    loop = kind.factory(options or LoopOptions())
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise LoopUnavailable(
            f"loop kind {name!r} built {type(loop).__name__}, "
            "not an asyncio event loop"
        )
    return loop


# -- the kinds racelab ships -------------------------------------------------


def _python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def _new_selector_loop(options: LoopOptions) -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(selectors.DefaultSelector())


register(
    LoopKind(
        name="selector",
        factory=_new_selector_loop,
        describe=(
            "asyncio.SelectorEventLoop on "
            + selectors.DefaultSelector.__name__
        ),
        version=_python_version,
    )
)


def _uvloop_unavailable() -> str | None:
    try:
        import uvloop  # noqa: F401
    except ImportError as exc:
        return f"uvloop is not installed ({exc})"
    return None


def _new_uvloop(options: LoopOptions) -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def _uvloop_version() -> str:
    import uvloop

    return f"uvloop {uvloop.__version__}"


register(
    LoopKind(
        name="uvloop",
        factory=_new_uvloop,
        describe="uvloop (libuv)",
        version=_uvloop_version,
        unavailable=_uvloop_unavailable,
    )
)


# -- proactor kinds: racelab.iocp, imported only when a loop is built ---------


def _emulated_network(options: LoopOptions) -> str:
    return "simulated" if options.kernel == "deterministic" else "loopback-tcp"


def _new_emulated_proactor(options: LoopOptions) -> asyncio.AbstractEventLoop:
    from racelab.iocp import new_emulated_loop

    return new_emulated_loop(options, transport="fixed")


def _new_emulated_proactor_2018(
    options: LoopOptions,
) -> asyncio.AbstractEventLoop:
    from racelab.iocp import new_emulated_loop

    return new_emulated_loop(options, transport="2018")


register(
    LoopKind(
        name="emulated-proactor",
        factory=_new_emulated_proactor,
        describe=(
            "asyncio's proactor loop and transports on racelab's emulated "
            "IOCP (kernel: thread or deterministic)"
        ),
        version=_python_version,
        network=_emulated_network,
    )
)
register(
    LoopKind(
        name="emulated-proactor-2018",
        factory=_new_emulated_proactor_2018,
        describe=(
            "emulated IOCP; transport whose pause_reading() cancels the "
            "posted read, as in 3.7.0b1-b5 (bpo-33694)"
        ),
        version=_python_version,
        network=_emulated_network,
    )
)


def _windows_only() -> str | None:
    if sys.platform != "win32":
        return (
            "the real IOCP proactor exists only on Windows (this is "
            f"{sys.platform}); use 'emulated-proactor' instead"
        )
    return None


def _new_proactor(options: LoopOptions) -> asyncio.AbstractEventLoop:
    from racelab.iocp.windows import new_proactor_loop

    return new_proactor_loop("fixed")


def _new_proactor_2018(options: LoopOptions) -> asyncio.AbstractEventLoop:
    from racelab.iocp.windows import new_proactor_loop

    return new_proactor_loop("2018")


register(
    LoopKind(
        name="proactor",
        factory=_new_proactor,
        describe="asyncio.ProactorEventLoop (Windows IOCP)",
        version=_python_version,
        unavailable=_windows_only,
    )
)
register(
    LoopKind(
        name="proactor-2018",
        factory=_new_proactor_2018,
        describe=(
            "asyncio.ProactorEventLoop (Windows IOCP) with the 3.7.0-beta "
            "transport (bpo-33694)"
        ),
        version=_python_version,
        unavailable=_windows_only,
    )
)
