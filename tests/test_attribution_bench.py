"""The estimator benchmark: cross-fitting, and the quick profile end to end
(ground truth, members, scores, metrics, report) on the digits."""

import json

import numpy as np
import pytest

from hint_jax.cli.main import main
from hint_jax.studies import attribution_bench as ab


def test_cross_fit_never_uses_a_points_own_fold():
  # Value a is perfect on even positions, b on odd ones: each fold gets
  # the value chosen on the *other* fold, which is the wrong one for it.
  per_value = {"a": np.array([1.0, 0.0, 1.0, 0.0]),
               "b": np.array([0.0, 1.0, 0.0, 1.0])}
  fit = ab.cross_fit(per_value)
  np.testing.assert_array_equal(fit["per_point"], [0.0, 0.0, 0.0, 0.0])
  assert fit["chosen"] == ["b", "a"]        # for the even fold, the odd
  assert fit["oracle"]["mean"] == 0.5
  one = ab.cross_fit({None: np.array([0.2, np.nan, 0.4])})
  assert np.isnan(one["per_point"][1]) and one["chosen"] == [None, None]


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  assert main(["experiment", "influence_bench", "--profile", "quick",
               "--out", str(out), "--no-progress"]) == 0
  return out


def test_quick_profile_end_to_end(quick_bench):
  rec = json.loads((quick_bench / ab.RECORD_FILE).read_text())
  assert set(rec["arms"]) == {"explicit", "cg", "ekfac", "grad_dot",
                              "tracin", "trak-4"}
  for label, arm in rec["arms"].items():
    assert arm["lds"]["defined"] > 90, label       # of 100 test points
    assert -1 <= arm["lds"]["mean"] <= 1
  # Explicit and CG solve the same damped system (650 parameters, CG to
  # 1e-5): the same scores up to the solver's tolerance, so the same
  # rank metrics to a few thousandths.
  for metric in ("lds", "loo"):
    assert rec["arms"]["explicit"][metric]["mean"] == pytest.approx(
        rec["arms"]["cg"][metric]["mean"], abs=0.01)
  # EK-FAC runs on the protocol's model (its layer taps reach the study)
  # and carries the signal: its LDS is of the explicit solve's order (a
  # loose check; even on one layer its Kronecker eigenbasis is not exact).
  assert rec["arms"]["ekfac"]["lds"]["mean"] > 0.5 * rec["arms"][
      "explicit"]["lds"]["mean"]
  # The sign conventions of scores and metrics agree: leaving out a
  # helpful example raises the loss, so LOO correlations are positive.
  assert rec["arms"]["explicit"]["loo"]["mean"] > 0.3
  assert 0 < rec["noise_ceiling_lds"]["mean"] <= 1
  assert "| explicit |" in (quick_bench / "report.md").read_text()
  with np.load(quick_bench / ab.PER_POINT_FILE) as z:
    assert z["lds/explicit"].shape == (100,)
    assert z["loo/cg"].shape == (100,)
    assert "noise ceiling" in " ".join(z.files)
    # The file holds what the record summarises.
    assert float(np.nanmean(z["lds/cg"])) == pytest.approx(
        rec["arms"]["cg"]["lds"]["mean"])
  assert rec["figure"] == ab.FIGURE_FILE
  assert (quick_bench / ab.FIGURE_FILE).stat().st_size > 0


def test_quick_profile_resumes_from_its_files(quick_bench):
  scores = sorted((quick_bench / "scores").glob("*.npy"))
  stamps = [p.stat().st_mtime_ns for p in scores]
  before = json.loads((quick_bench / ab.RECORD_FILE).read_text())
  assert main(["experiment", "influence_bench", "--profile", "quick",
               "--out", str(quick_bench), "--no-progress"]) == 0
  per_arm = [p for p in scores if "lds_per_point" not in p.name]
  assert [p.stat().st_mtime_ns for p in per_arm] == [
      s for p, s in zip(scores, stamps) if "lds_per_point" not in p.name]
  after = json.loads((quick_bench / ab.RECORD_FILE).read_text())
  assert after["arms"]["cg"]["lds"] == before["arms"]["cg"]["lds"]


def test_bench_bad_profile_is_one_line(tmp_path, capsys):
  assert main(["experiment", "influence_bench", "--profile", "cpu",
               "--out", str(tmp_path)]) == 2
  assert "influence_bench has the profiles" in capsys.readouterr().err
