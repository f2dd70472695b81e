# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reproducing bpo-33694
#
# **Question:** does pausing reading on the 2018 proactor transport lose
# received bytes, and does today's transport lose none under the same
# traffic?
#
# racelab maintainers, 2026-12-03

# %%
from IPython.display import display

from racelab import Config, store, timeline
from racelab.panel import ControlPanel, interact_figure
from racelab.run import run_trials

# %% tags=["parameters"]
# Loop kinds to compare: the 2018 transport first, then today's.
LOOPS = ["emulated-proactor-2018", "emulated-proactor"]
TRIALS = 10  # trials per loop kind
PACKETS = 200  # packets the client sends (race.py: 2,000)
PACKET_BYTES = 16384  # bytes per packet (race.py: 16 KiB)
PAUSE_EVERY_MS = 1.0  # read this long between pauses (race.py: 100)
PAUSE_FOR_MS = 1.0  # stay paused this long (race.py: 100)
SEED = 1234  # seed of the first trial; trial i runs with SEED + i
DATA_DIR = "../data"  # runs are saved in DATA_DIR/runs/<run_id>/

# %% [markdown]
# ## The story in brief
#
# In 2018 CPython's `ProactorEventLoop` (Windows, IOCP) silently dropped
# received bytes ([bpo-33694](https://bugs.python.org/issue33694)).
# Its socket transport keeps one overlapped receive (`WSARecv`) posted.
# `pause_reading()` cancelled that receive.
# When the receive had already completed in the kernel, the cancel failed
# silently, the future was marked cancelled anyway, and the completion
# carrying the bytes was thrown away when the loop dequeued it.
# It surfaced as a flaky start-TLS test
# ([bpo-33674](https://bugs.python.org/issue33674)) and was reproduced
# with `race.py`: an echo client and server exchanging 2,000 packets of
# 16 KiB both ways while the client paused and resumed reading every
# 100 ms.
# The fix: pausing no longer cancels; the completed read's bytes are held
# and delivered on resume.
#
# racelab reruns the experiment on Linux with asyncio's own proactor
# transports over an *emulated* IOCP: `emulated-proactor-2018` has the
# pre-fix pause and resume, `emulated-proactor` today's.
# Loss rates measured here describe the emulation, not Windows.
# The defaults pause much faster than race.py, so that short trials
# pause many times.

# %%
config = Config(
    loop=LOOPS[0],
    packets=PACKETS,
    packet_bytes=PACKET_BYTES,
    pause_every_ms=PAUSE_EVERY_MS,
    pause_for_ms=PAUSE_FOR_MS,
    seed=SEED,
)

# %% [markdown]
# ## The control panel
#
# Pick a loop kind and press **Run**.
# Trials run in a background thread, each on a fresh loop, so the
# notebook stays responsive; **Stop** ends the run after the trial under
# way and keeps every finished one.
# The figure and the table fill in as trials finish, and every run is
# saved under `DATA_DIR` with its id shown.

# %%
panel = ControlPanel(config, trials=TRIALS, data_dir=DATA_DIR)
display(panel)

# %% [markdown]
# ## Effect of the loop kind
#
# The same trials, seed for seed, on each loop kind; each run is saved so
# that notebook 04 can reload it by id.

# %%
runs = [run_trials(config.replace(loop=loop), TRIALS) for loop in LOOPS]
for run in runs:
    store.save_run(run, DATA_DIR)
    print(run.run_id, run.summary()["outcomes"])

# %% [markdown]
# ### The loss table
#
# One row per loop kind: its outcomes, and the share of conclusive trials
# (clean, loss, corrupt) that lost bytes, with its 95% Wilson interval.

# %%
timeline.loss_table(runs)

# %%
timeline.loss_rate_figure(runs)

# %% [markdown]
# Each point is a loop kind's loss rate over its conclusive trials, its
# bar the 95% Wilson interval, its label lossy/conclusive trials.
# A rate of 0 of 10 still allows up to about 30%: more trials tighten
# the bound on the fixed transport.

# %% [markdown]
# ## The timeline of one lossy trial
#
# The first trial of the 2018 transport that lost bytes (or its first
# trial, if none did), and where each lost range went.

# %%
lossy = [r for r in runs[0].results if r.outcome == "loss"]
trial = (lossy or runs[0].results)[0]
timeline.lost_moments(trial)

# %%
timeline.timeline_figure(trial)

# %% [markdown]
# Each row is one kind of event, grouped in lanes: client transport, the
# kernel under each socket, server transport.
# Grey bands are the intervals in which a side's reading was paused; red
# crosses are receive completions the loop threw away, and the dashed red
# lines mark where the receiver first got data past the lost bytes.
# Hover on a point for its bytes, stream offset and operation.

# %% [markdown]
# Any trial of any run, by loop kind and trial number:


# %%
def trial_timeline(loop, number=0):
    return timeline.timeline_figure(runs[LOOPS.index(loop)].results[number])


interact_figure(trial_timeline, loop=LOOPS, number=(0, TRIALS - 1))

# %% [markdown]
# The same timeline for the trial chosen above; notebook 03 takes one
# loss apart event by event.
