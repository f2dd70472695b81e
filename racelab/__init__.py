"""racelab: hunt, measure and explain race conditions in asyncio loops.

Vocabulary, used in one sense throughout:

loop
    An asyncio event loop object.  Its *loop kind* is the name it is built
    by (``"selector"``, ``"uvloop"``, ``"emulated-proactor"``, ...).
transport, protocol
    asyncio's meanings only.
proactor
    An IOCP-style loop: on Windows the real one; on Linux racelab's
    emulated IOCP under the standard library's proactor transports.
trial
    One echo session with one config and one seed.
run
    The trials of one invocation, saved under a ``run_id``.
sweep
    A grid of configs times repeats, executed as one run.
event
    One timestamped record; a *timeline* is a trial's events in order.
payload
    The deterministic, self-locating bytes a trial sends: any received
    byte's stream offset can be recovered from the bytes themselves.

The trial engine (this package minus its pandas, plotly and widget
modules) needs only the standard library.
"""

from racelab.config import Config, ConfigError
from racelab.events import Event, Recorder
from racelab.loops import (
    LoopUnavailable,
    available_kinds,
    new_loop,
    register_factory,
)

__version__ = "0.1.0"

# After __version__, which the sweep's manifest reads.  The function
# shadows the submodule as an attribute of the package (racelab.sweep is
# the function), so import the module's other names with
# ``from racelab.sweep import ...``.
from racelab.sweep import sweep

__all__ = [
    "Config",
    "ConfigError",
    "Event",
    "LoopUnavailable",
    "Recorder",
    "available_kinds",
    "new_loop",
    "register_factory",
    "sweep",
]
