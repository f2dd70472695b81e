"""The emulated proactor's cost, and how fast it reproduces bpo-33694.

Prints, measured in one run:

* trials per second of ``emulated-proactor`` (each kernel) against
  ``selector`` on the same workload, interleaved round by round, with the
  ratio to selector (aim: >= 0.5x);
* the median wall time from the start of the default 2018 scenario to
  its first detected loss: trials of ``emulated-proactor-2018`` with the
  default config run one after another, and the clock stops when one
  reports ``loss`` (aim: <= 2 s).  The time within that trial to the
  first discarded completion is printed too.

Usage: python benchmarks/bench_emulation.py [--rounds N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from racelab import Config
from racelab.trial import run_trial


def throughput(rounds: int, packets: int) -> None:
    kinds = {
        "selector": Config(loop="selector", packets=packets),
        "emulated-proactor (thread)": Config(
            loop="emulated-proactor", kernel="thread", packets=packets
        ),
        "emulated-proactor (deterministic)": Config(
            loop="emulated-proactor", kernel="deterministic",
            packets=packets,
        ),
    }
    for config in kinds.values():
        run_trial(config, record=False)  # warm up
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for round_ in range(rounds):
        for name, config in kinds.items():
            started = time.perf_counter()
            result = run_trial(config.replace(seed=round_), record=False)
            times[name].append(time.perf_counter() - started)
            assert result.lost_bytes == 0, (name, result.outcome)
    base = statistics.median(times["selector"])
    mib = packets * 16384 / 2**20
    print(f"throughput: {packets} x 16 KiB both ways ({mib:.0f} MiB each "
          f"way), default cadence, median of {rounds} interleaved rounds")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:<36} {1 / median:6.2f} trials/s  "
              f"{base / median:5.2f}x selector")


def time_to_first_loss(repeats: int, kernel: str) -> None:
    config = Config(loop="emulated-proactor-2018", kernel=kernel)
    waits, inside = [], []
    seed = 0
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(100):
            result = run_trial(config.replace(seed=seed))
            seed += 1
            if result.outcome == "loss":
                break
        else:
            raise RuntimeError("no loss in 100 trials")
        waits.append(time.perf_counter() - started)
        first = result.events[0].t_ns
        discard = next(
            e.t_ns for e in result.events
            if e.kind == "completion_discarded"
        )
        inside.append((discard - first) / 1e9)
    print(
        f"  2018 default scenario, {kernel} kernel: median "
        f"{statistics.median(waits):.3f} s to the first trial reporting "
        f"loss (max {max(waits):.3f} s, {repeats} repeats); first discarded "
        f"completion {statistics.median(inside) * 1000:.1f} ms into it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--packets", type=int, default=2000)
    args = parser.parse_args()
    throughput(args.rounds, args.packets)
    print("time to first detected loss:")
    for kernel in ("thread", "deterministic"):
        time_to_first_loss(args.repeats, kernel)


if __name__ == "__main__":
    main()
