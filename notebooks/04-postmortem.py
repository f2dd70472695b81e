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
# # Postmortem of a saved run
#
# **Question:** what did a saved run find, on what machine and with
# which settings, and what does its worst trial look like?
#
# racelab maintainers, 2026-12-03

# %%
from IPython.display import display

from racelab import store, timeline
from racelab.panel import interact_figure

# %% tags=["parameters"]
RUN_ID = "example-bpo-33694"  # a folder under DATA_DIR/runs/
DATA_DIR = "../data"  # where runs are saved

# %% [markdown]
# Every table and figure below is rebuilt from the files of the run
# alone: its manifest and its trials, ranges and events tables.
# Nothing is run again.

# %%
saved = store.load_run(RUN_ID, DATA_DIR)
manifest = saved.manifest
trials = saved.trials.sort_values("trial", ignore_index=True)
print(f"{len(trials)} trials, {len(saved.events):,} events loaded")

# %% [markdown]
# ## The environment
#
# What the manifest says about the machine, the loop kinds and the run.

# %%
timeline.environment_table(manifest)

# %% [markdown]
# The settings: each config field with the value all trials shared, or
# the values it took when the run varied it.

# %%
varied = timeline.varying_fields(trials)
display(timeline.settings_table(trials))

# %% [markdown]
# ## The outcomes

# %%
timeline.loss_table(trials, by=varied or "loop")

# %% [markdown]
# One row per combination of the varied settings: outcome counts and the
# loss rate over conclusive trials with its 95% Wilson interval.

# %%
timeline.loss_rate_figure(trials)

# %% [markdown]
# The loss rate of each loop kind in this run, pooled over any other
# varied setting (the subtitle names them), with 95% intervals.

# %%
timeline.trials_figure(trials, title=f"Run {RUN_ID}")

# %% [markdown]
# Each trial's lost bytes by outcome, then the loss rate over the trials
# so far with its 95% band.

# %% [markdown]
# ## Effect of the pause cadence
#
# Drawn when the run varied the cadence.

# %%
if trials["pause_every_ms"].nunique() > 1:
    display(timeline.loss_curves(trials))
else:
    print("one cadence only:", trials["pause_every_ms"].iloc[0], "ms")

# %% [markdown]
# When drawn: the loss rate against the time reading ran between pauses,
# one line per loop kind, with 95% bands.

# %% [markdown]
# ## The lost ranges

# %%
lost = saved.ranges[saved.ranges["category"] == "missing"]
lost.merge(trials[["trial", "loop", "seed"]], on="trial")

# %% [markdown]
# Every range of the payload stream that never arrived: its trial, loop
# kind, seed, direction (`up` to the server, `down` on the echo), stream
# offset and length.

# %% [markdown]
# ## The worst trial
#
# The trial that lost the most bytes (or the first trial, if none lost
# any).

# %%
worst = int(trials.loc[trials["lost_bytes"].idxmax(), "trial"])
row = trials[trials["trial"] == worst].iloc[0]
title = f"trial {worst}: {row['loop']}, seed {row['seed']}, {row['outcome']}"
print(title, f"- {row['lost_bytes']:,} B lost in {row['lost_ranges']} ranges")
timeline.lost_moments(saved.events, saved.ranges, trial=worst)

# %%
timeline.timeline_figure(
    saved.events, saved.ranges, trial=worst, title=f"Timeline of {title}"
)

# %% [markdown]
# The worst trial's events in lanes: grey bands are paused reading, red
# crosses discarded completions, dashed red lines where the receiver
# first got data past a lost range.

# %%
timeline.cumulative_bytes_figure(
    saved.events, saved.ranges, trial=worst, title=f"Bytes of {title}"
)

# %% [markdown]
# Bytes sent, received and echoed against time, then, per socket, the
# bytes the kernel completed that were not yet delivered: after each
# discarded completion (red cross) that line never returns to zero, and
# it ends at what the socket lost.

# %% [markdown]
# ## Any trial
#
# The timeline of any trial of the run:


# %%
def trial_timeline(number=worst):
    return timeline.timeline_figure(saved.events, saved.ranges, trial=number)


interact_figure(trial_timeline, number=sorted(trials["trial"].tolist()))

# %% [markdown]
# The chosen trial's timeline, drawn from the saved events.
