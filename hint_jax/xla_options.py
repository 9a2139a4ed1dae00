"""The XLA compiler options hint_jax compiles its computations with.

On the CPU, recent jaxlib releases hand convolutions and matrix products to
the YNNPACK library by default. For the networks here that is slower than
XLA:CPU's own kernels: on the 2-core machine of the benchmarks, with jaxlib
0.10.2, the training step ran 1.5x faster for the MNIST ConvNet and
ResNet-18 and 1.14-1.2x for resnet_tiny with YNNPACK kept for reductions
only (``xla_cpu_experimental_ynn_fusion_type`` =
``LIBRARY_FUSION_TYPE_REDUCE``); with jaxlib 0.12.1 (Python 3.12) 1.16x
for the ConvNet and 0.98x for resnet_tiny (measurements in
``experiments/results/bench/README.md``). hint_jax passes that option to
its own jitted functions only (``jit`` below), never through the process-wide
``XLA_FLAGS``, so other JAX code in the same process is unaffected.

Contract of ``compiler_options()``:
  * on backends other than the CPU: ``None`` (nothing is changed);
  * on the CPU with more than one device in the computation's world
    (``jax.device_count() > 1``: forced host devices,
    ``jax_num_cpu_devices``, or several processes): ``None``, for every
    computation of the process, sharded or not (the rule below);
  * on the CPU with one device, when the installed jaxlib is one the option
    was measured on (``MEASURED_JAXLIB``) and accepts it: the options dict;
  * otherwise ``None``, and ``status()`` says why (the benchmarks print it);
  * ``HINT_JAX_XLA_DEFAULTS=0`` in the environment turns the options off
    (for comparisons, or to rule them out when something looks wrong);
    ``HINT_JAX_XLA_DEFAULTS=force`` applies them even with several devices
    (diagnosis only: ``experiments/check_sharded_xla_options.py``).

Where the option applies, and why only there: on one CPU device it only
moves work between kernel libraries, and results agree with XLA's defaults
to float32 rounding (tests compare both settings). Under several host
devices it changes what the sharded computations run (XLA's own
convolution and matrix kernels on per-device shapes inside ``shard_map``
bodies, instead of YNNPACK's), and on some processors (an Intel Xeon with
AVX-512 and AMX) the sharded HINT update then disagreed with the
one-device update far beyond rounding; the measurements are in
``experiments/results/bench/README.md``. So the option is applied only in
a process that sees exactly one device: no computation split over devices
is compiled with it, and a one-device and a sharded result in the same
process come from the same compiler settings.
"""

import functools
import os
import pathlib
import platform
from typing import Optional

import jax
import numpy as np

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
               "LIBRARY_FUSION_TYPE_REDUCE"}
# jaxlib versions (major, minor) the option was measured on, [lo, hi)
# (0.10.2: helps every network; 0.12.1: helps the ConvNet, neutral on
# resnet_tiny).
MEASURED_JAXLIB = ((0, 10), (0, 13))
ENV_VAR = "HINT_JAX_XLA_DEFAULTS"
# ENV_VAR=FORCE: the options even with several devices (diagnosis only).
FORCE = "force"


def _jaxlib_version():
  import jaxlib  # pylint: disable=import-outside-toplevel
  parts = jaxlib.__version__.split(".")
  return int(parts[0]), int(parts[1])


@functools.lru_cache(maxsize=None)
def _probe() -> Optional[str]:
  """None if the CPU options apply here, else the reason they do not."""
  version = _jaxlib_version()
  lo, hi = MEASURED_JAXLIB
  if not lo <= version < hi:
    return (f"jaxlib {version[0]}.{version[1]} is outside the measured "
            f"range {lo[0]}.{lo[1]}-{hi[0]}.{hi[1] - 1}")
  try:
    jax.jit(lambda a: a.sum(), compiler_options=CPU_OPTIONS).lower(
        np.zeros(4, np.float32)).compile()
  except Exception as err:  # pylint: disable=broad-except
    return f"this jaxlib refuses the option ({str(err).splitlines()[0]})"
  return None


def _reason() -> Optional[str]:
  """None when the CPU options apply to a computation compiled now, else
  why they do not (the one place that decides)."""
  setting = os.environ.get(ENV_VAR)
  if setting == "0":
    return f"{ENV_VAR}=0"
  if jax.default_backend() != "cpu":
    return f"backend {jax.default_backend()}"
  devices = jax.device_count()
  if devices > 1 and setting != FORCE:
    return (f"{devices} devices: the option is applied with one device "
            f"only, where it was checked exact")
  return _probe()


def status() -> str:
  """One line: which compiler options ``jit`` applies here, and why."""
  reason = _reason()
  if reason is not None:
    return f"XLA defaults ({reason})"
  return "CPU options " + ", ".join(f"{k}={v}" for k, v in CPU_OPTIONS.items())


def processor_summary(cpuinfo="/proc/cpuinfo") -> str:
  """The host processor's model name and its AVX-512 / AMX flags, from
  ``cpuinfo`` (Linux; where it cannot be read, ``platform.processor()``):
  which kernels XLA and its libraries pick depends on them, so results and
  failure messages that compare kernel choices record it."""
  try:
    text = pathlib.Path(cpuinfo).read_text()
  except OSError:
    return platform.processor() or "unknown processor"
  lines = text.splitlines()
  name = next((ln.split(":", 1)[1].strip() for ln in lines
               if ln.startswith("model name")), "unknown model")
  flags = next((ln.split(":", 1)[1].split() for ln in lines
                if ln.startswith("flags")), [])
  wide = sorted(f for f in set(flags) if f.startswith(("avx512", "amx")))
  return f"{name}; {' '.join(wide) or 'no AVX-512/AMX'}"


def compiler_options() -> Optional[dict]:
  """The options for a computation compiled now (see the module docstring)."""
  return None if _reason() is not None else dict(CPU_OPTIONS)


class _LazyJit:
  """``jax.jit(fun, compiler_options=compiler_options(), **kwargs)``, built
  at the first call (so that importing a module that decorates with it does
  not start a JAX backend). JAX takes compiler options on top-level calls
  only: called while another function is being traced (inside a user's
  ``jax.jit``, ``grad``, ``vmap``, ...) it is the plain ``jax.jit``, and the
  outer compilation decides. Attributes (``lower``, ``_cache_size``, ...)
  are the top-level jitted function's."""

  def __init__(self, fun, kwargs):
    self._fun = fun
    self._kwargs = kwargs
    self._jitted = None
    self._plain = None
    functools.update_wrapper(self, fun)

  def _get(self):
    if self._jitted is None:
      self._jitted = jax.jit(self._fun, compiler_options=compiler_options(),
                             **self._kwargs)
    return self._jitted

  def _get_plain(self):
    if self._plain is None:
      self._plain = jax.jit(self._fun, **self._kwargs)
    return self._plain

  def __call__(self, *args, **kwargs):
    try:
      return self._get()(*args, **kwargs)
    except ValueError as err:  # JAX refuses the options under a trace
      if "top-level" not in str(err):
        raise
      return self._get_plain()(*args, **kwargs)

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return getattr(self._get(), name)


def jit(fun=None, **kwargs):
  """``jax.jit`` with hint_jax's compiler options; usable as ``jit(f, ...)``,
  ``@jit`` or ``functools.partial(jit, static_argnames=...)``."""
  if fun is None:
    return functools.partial(jit, **kwargs)
  return _LazyJit(fun, kwargs)
