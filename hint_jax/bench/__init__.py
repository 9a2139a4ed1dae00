"""Benchmarks as library functions: each measures, in one process, and
returns its figures as a JSON-ready dict; nothing here prints (status lines
go to a ``note`` callable). ``hint-jax bench`` prints their tables.

Timings on a shared machine are noisy: variants are timed in the same run,
repeats are interleaved (A, B, C, A, B, C, ...) so that load changes hit all
variants alike, and medians are reported.
"""
