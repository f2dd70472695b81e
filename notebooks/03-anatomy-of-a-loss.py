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
# # Anatomy of a loss
#
# **Question:** in one trial of the 2018 transport, which events lead
# from a paused read to bytes that never arrive?
#
# racelab maintainers, 2026-12-03

# %%
import pandas as pd
from IPython.display import display

from racelab import Config, timeline
from racelab.panel import interact_figure
from racelab.trial import run_trial

# %% tags=["parameters"]
LOOP = "emulated-proactor-2018"  # the transport whose pause cancels
PACKETS = 200  # packets the client sends
PACKET_BYTES = 16384  # bytes per packet
PAUSE_EVERY_MS = 1.0  # read this long between pauses
PAUSE_FOR_MS = 1.0  # stay paused this long
SEED = 1234  # first seed tried
MAX_TRIALS = 20  # try at most this many seeds for a lossy trial
PAD_MS = 0.3  # show this long either side of the discarded completion

# %% [markdown]
# ## A lossy trial
#
# Trials with seeds from `SEED` upward until one loses bytes.
# The emulated kernel runs in a thread on real loopback sockets, so which
# seed loses first can change from one run of this notebook to the next.

# %%
config = Config(
    loop=LOOP,
    packets=PACKETS,
    packet_bytes=PACKET_BYTES,
    pause_every_ms=PAUSE_EVERY_MS,
    pause_for_ms=PAUSE_FOR_MS,
)
for seed in range(SEED, SEED + MAX_TRIALS):
    trial = run_trial(config.replace(seed=seed))
    if trial.outcome == "loss":
        break
else:
    raise RuntimeError(f"no loss in {MAX_TRIALS} seeds: raise MAX_TRIALS")
print(f"seed {trial.seed}: {trial.outcome}, {trial.lost_bytes:,} B lost")

# %% [markdown]
# ## Where the lost bytes went
#
# One row per lost range: who should have received it, the discarded
# completion (time, operation, stream offset, bytes) that carried it, and
# when the receiver first got data past it.

# %%
moments = timeline.lost_moments(trial)
display(moments)
first = moments.dropna(subset=["discarded_ms"]).iloc[0]

# %% [markdown]
# ## The life of the discarded operation
#
# Every kernel event of the operation whose completion was thrown away,
# next to the transport callbacks in between.

# %%
timeline.op_life(trial, first["discarded_op"])

# %% [markdown]
# Read it top to bottom: the receive is posted, the kernel completes it
# with the bytes, the transport pauses reading, and the 2018
# `pause_reading()` cancels the receive.
# The cancel finds the receive already completed (`already_completed`),
# the loop marks its future cancelled anyway, and when it dequeues the
# completion it throws the bytes away (`completion_discarded`).

# %% [markdown]
# ## The events around it

# %%
window = (first["discarded_ms"] - PAD_MS, first["discarded_ms"] + PAD_MS)
timeline.timeline_figure(trial, window_ms=window)

# %% [markdown]
# The timeline zoomed on the discarded completion (red cross).
# The grey band is the receiver's paused reading; the dashed red line,
# shortly after, is where the receiver first got data from beyond the
# gap.
# Zoom out (double-click) for the whole trial.

# %% [markdown]
# ## The gap in the bytes

# %%
timeline.cumulative_bytes_figure(trial)

# %% [markdown]
# Top: solid lines count what the protocols saw, dashed lines what the
# kernel completed into posted receive buffers.
# Bottom: the difference on each socket, bytes completed but not yet
# delivered.
# It drops back to zero whenever the transport catches up, except at a
# red cross: there the loop discarded a completion, and the floor rises
# for good, ending at the bytes that socket lost.

# %% [markdown]
# ## The same seed on today's transport
#
# The fixed transport does not cancel on pause; its kernel events show
# no cancel of a completed receive and no discarded completion.

# %%
fixed = run_trial(config.replace(loop="emulated-proactor", seed=trial.seed))
counts = {
    t.config.loop: timeline.events_table(t)
    .query("side == 'kernel'")["label"]
    .value_counts()
    for t in (trial, fixed)
}
print(f"emulated-proactor, seed {fixed.seed}: {fixed.outcome}")
pd.DataFrame(counts).fillna(0).astype(int)

# %% [markdown]
# ## Any window
#
# The timeline around the first discarded completion, as wide as chosen:


# %%
def discard_window(pad_ms=PAD_MS):
    t = first["discarded_ms"]
    return timeline.timeline_figure(trial, window_ms=(t - pad_ms, t + pad_ms))


interact_figure(discard_window, pad_ms=(0.1, 10.0, 0.1))

# %% [markdown]
# The same timeline, centred on the discarded completion, over the
# chosen window.
