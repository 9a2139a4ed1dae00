"""One process of the two-process tests (tests/test_parallel.py).

``python multihost_worker.py PORT PROCESS_ID OUT.npz``: Starts JAX's
distributed runtime on localhost with 2 CPU devices per process, keeps this
process's rows of the digits, trains one epoch on the mesh over all 4
devices on its share of the first ROWS rows and saves the parameters and this process's batch order.

``python multihost_worker.py PORT PROCESS_ID RUN_DIR job``: both processes
run the same `hint_jax.pipeline.run_train` job (digits, 2 epochs) into the
shared RUN_DIR; only process 0 may write there."""

import dataclasses
import sys

import jax
import numpy as np

# Training rows used (4 global batches of 64): few steps, so the runs are
# compared before a ReLU kink can amplify rounding differences.
ROWS = 256


def main():
  port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  jax.config.update("jax_num_cpu_devices", 2)
  from hint_jax import parallel  # pylint: disable=g-import-not-at-top
  from hint_jax.parallel import distributed  # pylint: disable=g-import-not-at-top
  assert distributed.initialize(f"localhost:{port}", 2, pid, environ={})
  if sys.argv[4:] == ["job"]:
    from hint_jax import pipeline  # pylint: disable=g-import-not-at-top
    job = pipeline.TrainJob(pipeline.DataSpec("digits", subset=ROWS),
                            pipeline.TrainSpec(epochs=2, batch_size=64))
    pipeline.run_train(job, out, mesh=parallel.make_data_mesh())
    jax.distributed.shutdown()
    return
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  splits = data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)
  n = ROWS
  mine = distributed.process_rows(n)
  mesh = parallel.make_data_mesh()
  assert mesh.size == 4 and jax.process_count() == 2
  model = get_model("convnet_small", 10, (8, 8, 1))
  cfg = dataclasses.replace(preset("digits", epochs=1), batch_size=64)
  trainer = Trainer(model, cfg, n, mesh=mesh)
  state = trainer.init_state(jax.random.key(0))
  state, metrics = trainer.train_epoch(state, splits.x_train[:n][mine],
                                       splits.y_train[:n][mine], 0)
  flat = {"/".join(str(k) for k in path): np.asarray(v) for path, v in
          jax.tree_util.tree_flatten_with_path(state.params)[0]}
  np.savez(out, rows_start=mine.start, rows_stop=mine.stop,
           steps=int(state.step), loss=metrics["train_loss"], **flat)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
