"""Does the CPU compiler option of `hint_jax.xla_options` change the sharded
HINT update on this processor?

The library applies the option only in a process with one device (see
`hint_jax.xla_options`), because on an Intel Xeon with AVX-512 and AMX the
HINT update sharded over eight forced host devices disagreed with one
device by 0.7% of the noise's largest value when compiled with it. This
script reruns the two tests that compare the sharded update, in a fresh
process with eight forced host devices, once with the option forced on
(``HINT_JAX_XLA_DEFAULTS=force``) and once with XLA's defaults
(``HINT_JAX_XLA_DEFAULTS=0``, what the library does there):

- ``test_hint_update_matches_one_device``: the sharded update against the
  one-device update (selection, I_up, the noise after each update);
- ``test_sharded_hint_passes_match_float64``: each sharded pass (features,
  s_test, I_up, I_pert) in float32 against float64 on one device.

It prints the processor, each setting's verdict and the tests' failure
lines, which name the pass, the rows and the size of the disagreement.
Run from the repository root, with the test dependencies installed:

  python experiments/check_sharded_xla_options.py [--json out.json]

Pass on both settings: the option is exact in the sharded path on this
processor. Fail with ``force`` only: the fault the library avoids.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

from hint_jax import xla_options

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = ("test_hint_update_matches_one_device or "
         "test_sharded_hint_passes_match_float64")


def run(setting):
  """The two tests in a fresh 8-device process with HINT_JAX_XLA_DEFAULTS
  = ``setting``; returns (passed, the failure lines)."""
  env = dict(os.environ)
  env["HINT_JAX_XLA_DEFAULTS"] = setting
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                      + " --xla_force_host_platform_device_count=8").strip()
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       str(REPO / "tests" / "test_parallel.py"), "-k", TESTS],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=1800,
      check=False)
  out = proc.stdout + proc.stderr
  lines = [ln for ln in out.splitlines()
           if ln.startswith("E ") or " passed" in ln or " failed" in ln]
  return proc.returncode == 0, lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="write the verdicts to this file")
  args = parser.parse_args(argv)
  record = {"processor": xla_options.processor_summary(), "settings": {}}
  print(f"processor: {record['processor']}", flush=True)
  for setting, label in (("force", "option forced on"),
                         ("0", "XLA defaults (the library's choice)")):
    passed, lines = run(setting)
    record["settings"][setting] = {"passed": passed, "lines": lines}
    print(f"\n{label}: {'PASS' if passed else 'FAIL'}")
    for line in lines[-25:]:
      print("  " + line)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
