"""Shared timing loop of the side-by-side benchmarks in this folder."""

import json
import statistics

import jax


def side_by_side(run, modes, rounds):
  """Calls ``run(mode)`` (which returns seconds) once per mode as a warm-up
  (compilation), then ``rounds`` times per mode, alternating modes within
  every round so a noisy shared machine slows them alike. Prints each round;
  returns ``(first_call_seconds, seconds, medians)``, dicts by mode."""
  first = {m: run(m) for m in modes}
  for m in modes:
    print(f"{m}: first call (compiles) {first[m]:.1f} s", flush=True)
  times = {m: [] for m in modes}
  for i in range(rounds):
    for m in modes:
      times[m].append(run(m))
    print(f"round {i + 1}: " + ", ".join(f"{m} {times[m][-1]:.2f} s"
                                         for m in modes), flush=True)
  return first, times, {m: statistics.median(times[m]) for m in modes}


def write_json(path, args, first, times, medians):
  if path:
    with open(path, "w") as f:
      json.dump({"args": vars(args), "first_call_seconds": first,
                 "step_seconds": times, "median_seconds": medians,
                 "backend": jax.default_backend(),
                 "jax_version": jax.__version__}, f, indent=2)
