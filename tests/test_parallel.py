"""Data parallelism over 8 devices: sharded and one-device results agree.

These tests need 8 devices. On a CPU they are simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``, which must be set
before JAX starts; when this process has fewer devices (a plain ``pytest``
run), the one test defined instead re-runs this file in a subprocess with
the flag set and fails with its output if anything there fails. So the
sharded checks always run, whichever way the suite is started.

Tolerances: float64 checks agree to ~1e-15 relative (only the order of the
sums differs), asserted at 1e-10; float32 training steps agree to ~3e-8
after one step (measured), asserted at 1e-5 after three.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from hint_jax import hint, influence, parallel, xla_options
from hint_jax.errors import ConfigError
from hint_jax.hint.passes import passes_for
from hint_jax.models import get_model
from hint_jax.parallel import distributed
from hint_jax.parallel import influence as sharded
from hint_jax.train import Trainer
from hint_jax.train.presets import preset

DEVICES = 8
FLAG = f"--xla_force_host_platform_device_count={DEVICES}"

if jax.device_count() < DEVICES:

  @pytest.mark.slow

  def test_sharded_paths_under_forced_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + FLAG).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(pathlib.Path(__file__).resolve())], env=env, cwd=os.getcwd(),
        capture_output=True, text=True, timeout=1200, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert " passed" in out and "skipped" not in out, out[-3000:]

else:

  def _tree_max_diff(a, b):
    return max(float(jnp.max(jnp.abs(jnp.asarray(u) - jnp.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  @pytest.fixture(scope="module")
  def mesh():
    return parallel.make_data_mesh(DEVICES)

  @pytest.fixture
  def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)

  # ------------------------------------------------------------ the mesh
  def test_mesh_rows_and_padding(mesh):
    assert mesh.shape == {"data": DEVICES}
    x = np.arange(13 * 2, dtype=np.float32).reshape(13, 2)
    (xs,), w, n = parallel.shard_rows((x,), mesh)
    assert n == 13 and xs.shape == (16, 2)
    assert xs.sharding.spec == P("data") and w.sharding.spec == P("data")
    np.testing.assert_array_equal(np.asarray(xs)[:13], x)
    np.testing.assert_array_equal(np.asarray(xs)[13:], 0)
    np.testing.assert_allclose(np.asarray(w)[:13], 1 / 13, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(w)[13:], 0)
    with pytest.raises(ConfigError, match="only 8"):
      parallel.make_data_mesh(DEVICES + 1)
    with pytest.raises(ConfigError):
      parallel.shard_rows((x, x[:3]), mesh)

  # ------------------------------------------------------------ training
  @pytest.fixture(scope="module")
  def digits(digits_splits):
    return digits_splits

  def test_train_steps_match_one_device(mesh, digits):
    # convnet_small has BatchNorm: its batch statistics are taken over the
    # global batch across devices, so train mode agrees too.
    model = get_model("convnet_small", 10, (8, 8, 1))
    cfg = dataclasses.replace(preset("digits", epochs=1), batch_size=64)
    one = Trainer(model, cfg, len(digits.x_train))
    par = Trainer(model, cfg, len(digits.x_train), mesh=mesh)
    s1 = one.init_state(jax.random.key(0))
    s8 = par.init_state(jax.random.key(0))
    assert s8.params["head"]["kernel"].sharding.spec == P()
    step1 = jax.jit(one.train_step)
    rows = parallel.rows(mesh)
    for i in range(3):
      xb = digits.x_train[64 * i:64 * (i + 1)]
      yb = digits.y_train[64 * i:64 * (i + 1)]
      s1, m1 = step1(s1, xb, yb)
      s8, m8 = par.sharded_step(s8, jax.device_put(xb, rows),
                                jax.device_put(yb, rows))
      np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]),
                                 rtol=1e-5)
    assert _tree_max_diff(s1.params, s8.params) < 1e-5
    assert _tree_max_diff(s1.model_state, s8.model_state) < 1e-5
    assert s8.params["head"]["kernel"].sharding.spec == P()
    assert int(s8.step) == 3

  def test_train_epoch_draws_the_one_device_batches(mesh, digits):
    model = get_model("convnet_small", 10, (8, 8, 1))
    cfg = dataclasses.replace(preset("digits", epochs=1), batch_size=64)
    x, y = digits.x_train[:512], digits.y_train[:512]
    one = Trainer(model, cfg, len(x))
    par = Trainer(model, cfg, len(x), mesh=mesh)
    s1, r1 = one.train_epoch(one.init_state(jax.random.key(1)), x, y, 0)
    s8, r8 = par.train_epoch(par.init_state(jax.random.key(1)), x, y, 0)
    assert int(s8.step) == int(s1.step) == one.steps_per_epoch == 8
    # 8 steps of float32 reassociation: measured ~1e-7; a different batch
    # order differs by ~1e-1. (Over many steps a rounding difference at a
    # ReLU kink flips one unit's gradient and the runs drift apart, as any
    # two float orders do: measured 3e-3 after 2 epochs on 2 devices.)
    assert _tree_max_diff(s1.params, s8.params) < 1e-5
    assert abs(r1["train_loss"] - r8["train_loss"]) < 1e-4
    e1 = one.evaluate(s1, digits.x_test, digits.y_test)
    e8 = par.evaluate(s8, digits.x_test, digits.y_test)
    assert abs(e1["accuracy"] - e8["accuracy"]) < 1e-9
    with pytest.raises(ConfigError, match="multiple"):
      Trainer(model, dataclasses.replace(cfg, batch_size=60),
              len(digits.x_train), mesh=mesh)

  # ---------------------------------------------- influence, float64 maths
  def _mlp_problem(n, key=0):
    k = jax.random.split(jax.random.key(key), 4)
    x = jax.random.normal(k[0], (n, 5), jnp.float64)
    y = jax.random.randint(k[1], (n,), 0, 3)
    params = {"w1": 0.5 * jax.random.normal(k[2], (5, 4), jnp.float64),
              "w2": 0.5 * jax.random.normal(k[3], (4, 3), jnp.float64)}

    def loss_one(p, xi, yi):
      logits = jnp.tanh(xi @ p["w1"]) @ p["w2"]
      return -jax.nn.log_softmax(logits)[yi]

    return loss_one, params, x, y

  @pytest.mark.parametrize("n", [64, 61])
  def test_autodiff_influence_matches_one_device(mesh, x64, n):
    loss_one, params, x, y = _mlp_problem(n)
    x_val, y_val = x[:9], y[:9]
    g1 = influence.mean_grad(loss_one, params, x_val, y_val)
    g8 = sharded.mean_grad(loss_one, params, x_val, y_val, mesh)
    assert _tree_max_diff(g1, g8) < 1e-12
    op1 = influence.loss_hessian(loss_one, params, x, y, l2=0.1)
    op8 = sharded.loss_hessian(loss_one, params, x, y, mesh, l2=0.1,
                               chunk_size=3)
    assert _tree_max_diff(op1.matvec(g1), op8.matvec(g1)) < 1e-12
    np.testing.assert_allclose(op8.dense(), op1.dense(), rtol=1e-10,
                               atol=1e-13)
    s1, _ = influence.s_test(op1, loss_one, params, x_val, y_val, damping=1.0)
    # λ = 1 keeps H + λI positive definite for this small tanh network.
    s8, info = sharded.s_test(op8, loss_one, params, x_val, y_val, mesh,
                              damping=1.0)
    assert bool(info.converged)
    assert _tree_max_diff(s1, s8) < 1e-10
    # LiSSA draws its batches from the operator's rows: the same batches.
    lissa = dict(method="lissa", damping=1.0, scale=10.0, depth=30,
                 batch_size=8, key=jax.random.key(0))
    l1, _ = influence.solve(op1, g1, **lissa)
    l8, _ = influence.solve(op8, g1, **lissa)
    assert _tree_max_diff(l1, l8) < 1e-10
    up1 = influence.influence_up(loss_one, params, x, y, s1)
    up8 = sharded.influence_up(loss_one, params, x, y, s8, mesh,
                               chunk_size=2)
    np.testing.assert_allclose(up8, up1, rtol=1e-9, atol=1e-12)
    pe1 = influence.influence_pert(loss_one, params, x, y, s1)
    pe8 = sharded.influence_pert(loss_one, params, x, y, s8, mesh)
    np.testing.assert_allclose(pe8, pe1, rtol=1e-9, atol=1e-12)
    if n % DEVICES == 0:  # the outputs stay split by rows
      assert up8.sharding.spec == P("data")
      assert pe8.sharding.spec == P("data")
    assert up8.shape == (n,) and pe8.shape == x.shape

  @pytest.mark.parametrize("n", [96, 90])
  def test_top_layer_influence_matches_one_device(mesh, x64, n):
    k = jax.random.split(jax.random.key(3), 5)
    d, classes = 6, 4
    w_feat = jax.random.normal(k[0], (12, d), jnp.float64)
    features = jax.tree_util.Partial(
        lambda w, xb: jnp.tanh(xb.reshape(xb.shape[0], -1) @ w), w_feat)
    x = jax.random.uniform(k[1], (n, 3, 4), jnp.float64)
    y = jax.random.randint(k[2], (n,), 0, classes)
    top = {"kernel": 0.3 * jax.random.normal(k[3], (d, classes), jnp.float64),
           "bias": 0.1 * jax.random.normal(k[4], (classes,), jnp.float64)}
    phi = features(x)
    op1 = influence.top_layer_hessian(top, phi)
    op8 = sharded.top_layer_hessian(top, phi, mesh, chunk_size=5)
    np.testing.assert_allclose(op8.dense(), op1.dense(), rtol=1e-10,
                               atol=1e-13)
    s1, _ = influence.s_test(op1, influence.top_loss_one, top, phi[:20],
                             y[:20], method="cg")
    s8, _ = sharded.s_test(op8, influence.top_loss_one, top, phi[:20],
                           y[:20], mesh, method="cg")
    assert _tree_max_diff(s1, s8) < 1e-10
    # LiSSA samples the same rows from the sharded operator's data.
    l1, _ = influence.solve(op1, s1, method="lissa", damping=0.5,
                            key=jax.random.key(0), depth=50)
    l8, _ = influence.solve(op8, s1, method="lissa", damping=0.5,
                            key=jax.random.key(0), depth=50)
    assert _tree_max_diff(l1, l8) < 1e-10
    up1 = influence.top_layer_up_scores(top, phi, y, s1)
    up8 = sharded.top_layer_up_scores(top, phi, y, s8, mesh)
    np.testing.assert_allclose(up8, up1, rtol=1e-9, atol=1e-12)
    pe1 = influence.top_layer_pert(features, top, x, y, s1, chunk_size=32)
    pe8 = sharded.top_layer_pert(features, top, x, y, s8, mesh, chunk_size=4)
    np.testing.assert_allclose(pe8, pe1, rtol=1e-9, atol=1e-12)
    if n % DEVICES == 0:
      assert up8.sharding.spec == P("data")
      assert pe8.sharding.spec == P("data")

  # ------------------------------------------------------------------ HINT
  def _where(a, b, tol):
    """Which rows of two (k, ...) arrays differ by more than ``tol``."""
    bad = np.abs(a - b).reshape(len(a), -1).max(axis=1) > tol
    rows_bad = np.flatnonzero(bad)
    return f"{len(rows_bad)} of {len(a)} rows (first: {rows_bad[:12].tolist()})"

  def test_compiler_options_off_with_several_devices():
    # xla_options' rule: with several devices no hint_jax computation is
    # compiled with the CPU options, so the sharded and the one-device
    # HINT updates below come from the same compiler settings.
    if os.environ.get(xla_options.ENV_VAR) == xla_options.FORCE:
      pytest.skip(f"{xla_options.ENV_VAR}={xla_options.FORCE} set")
    assert xla_options.compiler_options() is None
    assert f"{DEVICES} devices" in xla_options.status()

  def test_hint_update_matches_one_device(mesh, digits, digits_convnet):
    model, state = digits_convnet
    cfg = hint.HintConfig(schedule=(0, 1), ratio=0.3, chunk_size=64)
    runs = []
    for m in (None, mesh):
      h = hint.Hint(model, cfg, digits.x_train, digits.y_train, digits.x_val,
                    digits.y_val, mesh=m)
      x, deltas, hs = digits.x_train, [], h.init()
      for epoch in (0, 1):
        hs, x, rec = h.update(hs, epoch, state.params, state.model_state, x)
        deltas.append(np.asarray(hs["hint_delta"]))
      runs.append((hs, x, rec, deltas))
    (h1, x1, r1, dl1), (h8, x8, r8, dl8) = runs
    context = (f"one device vs {DEVICES} forced host devices, the HINT "
               f"update of the trained digits ConvNet (r = 0.3, updates "
               f"before epochs 0 and 1); compiler: {xla_options.status()}; "
               f"processor: {xla_options.processor_summary()}")
    np.testing.assert_array_equal(h8["hint_selected"], h1["hint_selected"],
                                  err_msg=context)
    # float32, and s_test comes from CG stopped at a relative residual of
    # 1e-6: the two s_test differ at that level, so the scores agree to a
    # few 1e-6 of their largest magnitude (measured 6.6e-7 of it).
    scale = float(np.max(np.abs(h1["hint_scores"])))
    np.testing.assert_allclose(h8["hint_scores"], h1["hint_scores"], rtol=0,
                               atol=5e-6 * scale,
                               err_msg=f"I_up scores; {context}")
    # The noise after each update (the same 5e-6 of its largest value; 1e-6
    # measured on an AMD EPYC); the rows say which examples disagree.
    for epoch, d1, d8 in zip((0, 1), dl1, dl8):
      tol = 5e-6 * float(np.max(np.abs(d1)))
      np.testing.assert_allclose(
          d8, d1, rtol=0, atol=tol,
          err_msg=(f"delta after the update before epoch {epoch}: "
                   f"{_where(d8, d1, tol)} differ; {context}"))
    assert r8.num_selected == r1.num_selected
    # uint8 rounding can flip a pixel whose noised value sits on a .5
    # boundary; none did here, and at most a handful may.
    assert np.mean(x8 != x1) < 1e-4

  def test_sharded_hint_passes_match_float64(mesh, digits, digits_convnet):
    # Each pass of a sharded HINT update, in float32 on DEVICES devices as
    # the library compiles it here, against the same maths in float64 on
    # one device (x64, XLA's float64 kernels): catches a wrong kernel in
    # the sharded path whatever it agrees with on one device.
    model, state = digits_convnet
    top = state.params["head"]
    passes = passes_for(mesh)
    phi8 = passes.features(model, state.params, state.model_state,
                           digits.x_train, 64)
    phiv8 = passes.features(model, state.params, state.model_state,
                            digits.x_val, 64)
    y_val = jnp.asarray(digits.y_val)
    s8, info = passes.s_test(top, phi8, phiv8, y_val, method="cg",
                             damping=0.5, tol=1e-6)
    assert bool(info.converged)
    up8 = np.asarray(passes.up_scores(top, phi8, jnp.asarray(digits.y_train),
                                      s8))
    sel = np.sort(np.argsort(-np.abs(up8))[:96])
    xs = digits.x_train[sel].astype(np.float32) / 255.0
    pert8 = np.asarray(passes.pert(model.features_fn(state.params,
                                                     state.model_state),
                                   top, jnp.asarray(xs),
                                   jnp.asarray(digits.y_train[sel]), s8, 64))

    jax.config.update("jax_enable_x64", True)
    try:
      f64 = lambda t: jax.tree.map(  # pylint: disable=g-long-lambda
          lambda a: jnp.asarray(np.asarray(a, np.float64)), t)
      params, mstate, top64 = (f64(state.params), f64(state.model_state),
                               f64(top))
      feats = model.features_fn(params, mstate)
      phi = np.asarray(feats(jnp.asarray(digits.x_train / 255.0)))
      phiv = feats(jnp.asarray(digits.x_val / 255.0))
      op = influence.top_layer_hessian(top64, jnp.asarray(phi))
      g = influence.mean_grad(influence.top_loss_one, top64, phiv, y_val)
      s64, _ = influence.solve(op, g, method="direct", damping=0.5)
      up64 = np.asarray(influence.top_layer_up_scores(
          top64, jnp.asarray(phi), jnp.asarray(digits.y_train), s64))
      pert64 = np.asarray(influence.top_layer_pert(
          feats, top64, jnp.asarray(np.asarray(xs, np.float64)),
          jnp.asarray(digits.y_train[sel]), f64(s8), chunk_size=96))
    finally:
      jax.config.update("jax_enable_x64", False)
    context = (f"{DEVICES} devices in float32 against one device in float64; "
               f"compiler: {xla_options.status()}; processor: "
               f"{xla_options.processor_summary()}")
    # Tolerances, relative to each quantity's largest magnitude, measured on
    # an AMD EPYC (with XLA's defaults and with the options forced): float32
    # features agree with float64 to 2.4e-7-2.9e-7 (asserted 1e-5); s_test,
    # which also carries CG's 1e-6 residual, to 1.3e-6-1.6e-6 (asserted
    # 1e-4); I_up to 1.0e-6-1.3e-6 and I_pert to 4.4e-7-1.0e-6 (asserted
    # 2e-5). The fault this guards against was 7e-3.
    np.testing.assert_allclose(np.asarray(phi8), phi, rtol=0,
                               atol=1e-5 * np.max(np.abs(phi)),
                               err_msg=f"features; {context}")
    s8_flat, s64_flat = (np.concatenate([np.ravel(v) for v in
                                         jax.tree.leaves(t)])
                         for t in (s8, s64))
    assert s64_flat.dtype == pert64.dtype == np.float64
    s_err = np.max(np.abs(s8_flat - s64_flat)) / np.max(np.abs(s64_flat))
    assert s_err < 1e-4, f"s_test off by {s_err:.2e} of its max; {context}"
    np.testing.assert_allclose(up8, up64, rtol=0,
                               atol=2e-5 * np.max(np.abs(up64)),
                               err_msg=f"I_up; {context}")
    tol = 2e-5 * float(np.max(np.abs(pert64)))
    np.testing.assert_allclose(
        pert8, pert64, rtol=0, atol=tol,
        err_msg=f"I_pert: {_where(pert8, pert64, tol)} differ; {context}")

  def test_train_command_on_devices(tmp_path):
    from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
    import json  # pylint: disable=g-import-not-at-top
    acc = {}
    for d in ("1", "8"):
      out = tmp_path / f"d{d}"
      assert main(["train", "--dataset", "digits", "--epochs", "1",
                   "--defence", "hint", "--schedule", "0", "--devices", d,
                   "--out", str(out), "--no-progress"]) == 0
      res = json.loads((out / "result.json").read_text())
      assert res["devices"] == int(d) and res["processes"] == 1
      acc[d] = res["test_accuracy"]
    # Same batches, same HINT noise up to float rounding: the same test
    # predictions but for at most one borderline image of the 400.
    assert abs(acc["1"] - acc["8"]) <= 1 / 400 + 1e-9
    assert main(["train", "--dataset", "digits", "--devices", "9",
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert main(["train", "--dataset", "digits", "--process-id", "1",
                 "--out", str(tmp_path / "y"), "--no-progress"]) == 2

  # ---------------------------------------------------------- multi-host
  def test_distributed_settings_are_checked():
    assert not distributed.initialize(environ={})
    with pytest.raises(ConfigError, match="need --coordinator"):
      distributed.initialize(process_id=1, environ={})
    with pytest.raises(ConfigError, match="number of processes"):
      distributed.initialize(coordinator="h:1", environ={})
    with pytest.raises(ConfigError, match="not in"):
      distributed.initialize(coordinator="h:1", num_processes=2,
                             process_id=2, environ={})
    with pytest.raises(ConfigError, match="HOST:PORT"):
      distributed.initialize(coordinator="h", num_processes=2,
                             process_id=0, environ={})

  @pytest.mark.parametrize("n,count", [(10, 3), (59000, 4), (5, 5), (3, 4)])
  def test_process_rows_partition_the_rows(n, count):
    parts = [distributed.process_rows(n, p, count) for p in range(count)]
    covered = np.concatenate([np.arange(n)[s] for s in parts])
    np.testing.assert_array_equal(covered, np.arange(n))
    sizes = [s.stop - s.start for s in parts]
    assert max(sizes) - min(sizes) <= 1

  def test_global_batch_on_one_process(mesh):
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    g = distributed.global_batch(x, parallel.rows(mesh))
    assert g.sharding.spec == P("data") and g.shape == x.shape
    np.testing.assert_array_equal(np.asarray(g), x)

  def _two_processes(tmp_path, *args):
    """Runs multihost_worker.py as processes 0 and 1 on localhost with
    ``args`` (``{pid}`` in them becomes the process id); returns their
    outputs after both exited 0."""
    import socket  # pylint: disable=g-import-not-at-top
    with socket.socket() as sock:
      sock.bind(("localhost", 0))
      port = sock.getsockname()[1]
    worker = pathlib.Path(__file__).with_name("multihost_worker.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [subprocess.Popen(
        [sys.executable, str(worker), str(port), str(pid),
         *(a.format(pid=pid) for a in args)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for pid in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
      assert p.returncode == 0, out[-4000:]
    return outs

  def test_two_processes_write_one_run_folder_once(tmp_path):
    """A training job over two processes sharing one run folder: only
    process 0 writes, so every epoch is in metrics.jsonl once; run again,
    both processes resume from the folder's checkpoint and nothing is
    written twice."""
    run = tmp_path / "run"
    _two_processes(tmp_path, str(run), "job")
    epochs = lambda: [json.loads(ln)["epoch"] for ln in  # pylint: disable=g-long-lambda
                      (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs() == [1, 2]
    first = json.loads((run / "result.json").read_text())
    assert first["processes"] == 2 and first["devices"] == 4
    assert first["num_train"] == 256
    _two_processes(tmp_path, str(run), "job")
    assert epochs() == [1, 2]
    again = json.loads((run / "result.json").read_text())
    assert again["test_accuracy"] == first["test_accuracy"]
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock", "checkpoint.json", "checkpoint.msgpack", "metrics.jsonl",
        "result.json"]

  def test_two_processes_train_like_their_global_batches(tmp_path, digits):
    # Two processes on localhost, 2 CPU devices each, through
    # jax.distributed: each keeps its own rows and supplies half of every
    # global batch. Replaying the same global batches on one device must
    # give the same parameters (float32 reassociation over 4 steps, as
    # above); the two processes hold identical replicas.
    _two_processes(tmp_path, str(tmp_path / "p{pid}.npz"))
    res = [np.load(tmp_path / f"p{pid}.npz") for pid in (0, 1)]

    model = get_model("convnet_small", 10, (8, 8, 1))
    cfg = dataclasses.replace(preset("digits", epochs=1), batch_size=64)
    n = 256  # ROWS of multihost_worker.py
    one = Trainer(model, cfg, n)
    state = one.init_state(jax.random.key(0))
    from hint_jax.train.state import shuffle_key  # pylint: disable=g-import-not-at-top
    local_batches = []
    for pid in (0, 1):
      mine = distributed.process_rows(n, pid, 2)
      assert (int(res[pid]["rows_start"]), int(res[pid]["rows_stop"])) == (
          mine.start, mine.stop)
      key = jax.random.fold_in(shuffle_key(state, 0), pid)
      perm = np.asarray(jax.random.permutation(key, mine.stop - mine.start))
      steps = one.steps_per_epoch
      local_batches.append(mine.start + perm[:steps * 32].reshape(steps, 32))
    step = jax.jit(one.train_step)
    for s in range(one.steps_per_epoch):
      idx = np.concatenate([local_batches[0][s], local_batches[1][s]])
      state, _ = step(state, digits.x_train[idx], digits.y_train[idx])
    flat = {"/".join(str(k) for k in path): np.asarray(v) for path, v in
            jax.tree_util.tree_flatten_with_path(state.params)[0]}
    for name, value in flat.items():
      np.testing.assert_array_equal(res[0][name], res[1][name])
      np.testing.assert_allclose(res[0][name], value, rtol=0, atol=1e-4)
    assert int(res[0]["steps"]) == one.steps_per_epoch
