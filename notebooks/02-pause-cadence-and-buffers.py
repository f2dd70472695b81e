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
# # Pause cadence and socket buffers
#
# **Question:** how does the loss rate of each loop kind depend on how
# often reading is paused, and on the client's SO_SNDBUF and SO_RCVBUF?
#
# racelab maintainers, 2026-12-03

# %%
from IPython.display import display

from racelab import timeline
from racelab.panel import interact_figure
from racelab.sweep import sweep

# %% tags=["parameters"]
# Loop kinds to compare: the 2018 transport and today's.
LOOPS = ["emulated-proactor-2018", "emulated-proactor"]
PAUSE_EVERY_MS = [0.5, 2.0, 8.0]  # read this long between pauses
PAUSE_FOR_MS = 1.0  # each pause lasts this long
SNDBUF_BYTES = [None, 16384]  # client SO_SNDBUF; None keeps the OS default
RCVBUF_BYTES = [None, 16384]  # client SO_RCVBUF; None keeps the OS default
TRIALS = 5  # trials per cell of each grid
PACKETS = 100  # packets the client sends
PACKET_BYTES = 16384  # bytes per packet
WORKERS = 2  # worker processes running trials
SEED = 1234  # trial i of every cell runs with SEED + i
DATA_DIR = "../data"  # sweeps are saved in DATA_DIR/runs/<run_id>/

# %% [markdown]
# Every cell of a grid runs the same seeds, so cells differ only in what
# the grid changes.
# Linux doubles the buffer size it is asked for; the trials table keeps
# what the kernel actually set (`client_sndbuf_actual`, ...).
# Rates on the emulated proactor describe racelab's emulation, not
# Windows.

# %%
base = {
    "packets": PACKETS,
    "packet_bytes": PACKET_BYTES,
    "pause_for_ms": PAUSE_FOR_MS,
    "seed": SEED,
}
grid = {"loop": LOOPS, "pause_every_ms": PAUSE_EVERY_MS}

# %% [markdown]
# ## Effect of SO_SNDBUF

# %%
by_sndbuf = sweep(
    {**grid, "client_sndbuf_bytes": SNDBUF_BYTES},
    config=base,
    trials=TRIALS,
    workers=WORKERS,
    data_dir=DATA_DIR,
)
print(f"run {by_sndbuf.run_id}: {by_sndbuf.status}")

# %%
timeline.loss_heatmap(by_sndbuf, y="client_sndbuf_bytes")

# %% [markdown]
# One panel per loop kind: each cell is the share of conclusive trials
# that lost bytes at that cadence and send buffer, labelled
# lossy/conclusive; hover for its 95% interval.

# %%
timeline.loss_curves(by_sndbuf, dash="client_sndbuf_bytes")

# %% [markdown]
# The same rates as curves against the cadence, one colour per loop kind
# and one dash per send buffer, with their 95% intervals as bands.

# %% [markdown]
# ## Effect of SO_RCVBUF

# %%
by_rcvbuf = sweep(
    {**grid, "client_rcvbuf_bytes": RCVBUF_BYTES},
    config=base,
    trials=TRIALS,
    workers=WORKERS,
    data_dir=DATA_DIR,
)
print(f"run {by_rcvbuf.run_id}: {by_rcvbuf.status}")

# %%
timeline.loss_heatmap(by_rcvbuf, y="client_rcvbuf_bytes")

# %% [markdown]
# Loss rate over cadence and the client's receive buffer, one panel per
# loop kind, labelled lossy/conclusive.

# %%
timeline.loss_curves(by_rcvbuf, dash="client_rcvbuf_bytes")

# %% [markdown]
# The receive-buffer rates as curves against the cadence, with their
# 95% bands.

# %% [markdown]
# ## Per cell
#
# Each grid's summary: outcome counts, rates and exposure (pauses and
# bytes that arrived while paused) per cell.

# %%
display(by_sndbuf.summary)
display(by_rcvbuf.summary)

# %% [markdown]
# ## Any grid, any buffer field
#
# The curves again, for the grid and loop kinds chosen:


# %%
def grid_curves(buffer, loop="all"):
    result = by_sndbuf if buffer == "client_sndbuf_bytes" else by_rcvbuf
    trials = result.trials
    if loop != "all":
        trials = trials[trials["loop"] == loop]
    return timeline.loss_curves(trials, dash=buffer)


interact_figure(
    grid_curves,
    buffer=["client_sndbuf_bytes", "client_rcvbuf_bytes"],
    loop=["all", *LOOPS],
)

# %% [markdown]
# The chosen grid's loss curves, for one loop kind or all of them.
