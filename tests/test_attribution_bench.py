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
    assert -1 <= arm["lds_summed"]["at_best_per_point_value"] <= 1
  assert -1 <= rec["retest_lds_summed"] <= 1
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


def test_hint_top_arm_on_a_batchnorm_convnet_is_the_dense_solve(tmp_path):
  """The ConvNet protocol (BatchNorm statistics carried through training,
  held fixed when attributing): the HINT-top arm's scores equal the
  closed-form float64 solve on the top layer's features:
  g_test^T (H + 0.5 I)^-1 g_train with H the exact Hessian of the mean
  training cross-entropy over the linear head (W, b)."""
  from hint_jax.attribution import groundtruth as gt  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import groundtruth as pgt  # pylint: disable=g-import-not-at-top
  job = ab.BenchJob(protocol="digits_convnet", num_subsets=4, num_removed=0,
                    noise_ceiling=False, chunk=4, arms=(ab.HINT_TOP,))
  rec = ab.run_bench(job, tmp_path)
  assert rec["arms"]["hint_top"]["params"] == ["head"]
  assert rec["full_model_test_accuracy"] > 0.8
  got = np.load(tmp_path / "scores" / "hint_top.npy")
  protocol = pgt.get_protocol("digits_convnet")
  data = pgt.load_protocol(protocol)
  with np.load(tmp_path / "members" / "full.npz") as z:
    leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
  import jax  # pylint: disable=g-import-not-at-top
  template = jax.eval_shape(data.init, jax.random.key(0))
  params, state = gt.unstack(jax.tree.unflatten(
      jax.tree.structure(template), leaves), 0)
  module = protocol.module()

  def parts(x, y):
    _, phi = module.apply({"params": params, **state}, x,
                          return_features=True)
    phi = np.concatenate([np.asarray(phi, np.float64),
                          np.ones((len(x), 1))], 1)        # bias column
    w = np.concatenate([np.asarray(params["head"]["kernel"], np.float64),
                        np.asarray(params["head"]["bias"],
                                   np.float64)[None]], 0)
    logits = phi @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    grads = np.einsum("nf,nc->nfc", phi, d).reshape(len(x), -1)
    return phi, p, grads

  phi, p, g_train = parts(data.x_train, data.y_train)
  n, f = phi.shape
  c = p.shape[1]
  curv = np.einsum("nc,nd->ncd", -p, p)
  curv[:, np.arange(c), np.arange(c)] += p
  hess = np.einsum("nf,ng,ncd->fcgd", phi, phi, curv).reshape(f * c,
                                                              f * c) / n
  _, _, g_test = parts(data.x_test, data.y_test)
  want = g_test @ np.linalg.solve(hess + 0.5 * np.eye(f * c), g_train.T)
  # float32 features, gradients and Cholesky solve against float64 (the
  # damping 0.5 keeps the system well conditioned): about 1e-6 of the
  # largest score; asserted at 1e-4 of it.
  np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
