"""Timing helpers shared by the benchmarks."""

import statistics
import time

import jax


def quiet(_text):
  """The default ``note``: says nothing."""


def interleaved_medians(fns: dict, repeats: int):
  """Times each ``fn()`` ``repeats`` times, interleaved; returns
  ``{name: (median_seconds, all_seconds)}``."""
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t0)
  return {name: (statistics.median(ts), ts) for name, ts in times.items()}


def median_seconds(fn, repeats):
  """The median wall time of ``repeats`` calls of ``fn`` after one
  warm-up call (compilation excluded)."""
  jax.block_until_ready(fn())  # warm-up / compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def timed(fn):
  """``(fn(), seconds)``, waiting for the result."""
  t0 = time.perf_counter()
  out = fn()
  jax.block_until_ready(out)
  return out, time.perf_counter() - t0
