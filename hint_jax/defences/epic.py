"""EPIC (Yang et al., 2022), as the HINT paper describes it: drop the training
points that sit isolated in gradient space.

Every ``period`` epochs after ``warmup`` epochs, each still-active example
gets a gradient proxy, the cross-entropy's gradient w.r.t. the logits,
``g_i = softmax(W phi_i + b) - onehot(y_i)``. Within each class, greedy
facility location on the similarity ``exp(-||g_i - g_j|| / scale)`` picks
``ceil(budget * n_class)`` medoids; every point joins its most similar
medoid, and the points of clusters of size <= 1 (a medoid that nothing else
joined) are dropped for good.

The greedy is the lazy ("accelerated") greedy: facility location is
submodular, so a candidate's marginal gain only shrinks as medoids are
added and a stale gain is an upper bound. It picks the same medoids as the
plain greedy (same tie-break: lowest index) with far fewer gain
evaluations. Plain numpy; the similarity matrix of one class is held in
memory (float32, n_class^2: 140 MB for an MNIST class).
"""

import dataclasses
import heapq
import math
import time
from typing import Dict

import numpy as np

from hint_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class EpicConfig:
  """EPIC's settings (paper defaults: ``paper_epic_config``).

  Attributes:
    warmup: epochs trained on everything before the first selection (K).
    period: epochs between selections (T); selections run before epochs
      ``warmup, warmup + period, ...`` (0-based).
    budget: medoids per class as a fraction of the class's active points
      ("EPIC-0.1").
    scale: the similarity's length scale.
  """
  warmup: int = 5
  period: int = 2
  budget: float = 0.1
  scale: float = 10.0

  def validate(self) -> "EpicConfig":
    if self.warmup < 0 or self.period < 1:
      raise ConfigError(f"EPIC needs warmup >= 0 and period >= 1, got "
                        f"{self.warmup} and {self.period}")
    if not (math.isfinite(self.budget) and 0.0 < self.budget <= 1.0):
      raise ConfigError(f"EPIC budget must be in (0, 1], got {self.budget}")
    if not (math.isfinite(self.scale) and self.scale > 0):
      raise ConfigError(f"EPIC scale must be > 0, got {self.scale}")
    return self

  def selects_before(self, epoch: int) -> bool:
    return epoch >= self.warmup and (epoch - self.warmup) % self.period == 0


# The HINT paper: T = 4, K = 10 on CIFAR-10; T = 2, K = 5 on MNIST.
PAPER_EPIC = {"mnist": EpicConfig(warmup=5, period=2),
              "cifar10": EpicConfig(warmup=10, period=4),
              "digits": EpicConfig(warmup=5, period=2)}


def gradient_proxies(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``softmax(logits) - onehot(labels)``, float32 (n, C)."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  p = np.exp(z)
  p /= p.sum(axis=1, keepdims=True)
  p[np.arange(len(p)), np.asarray(labels)] -= 1.0
  return p.astype(np.float32)


def similarity(g: np.ndarray, scale: float) -> np.ndarray:
  """``exp(-||g_i - g_j|| / scale)`` for all pairs, float32 (n, n)."""
  g = np.asarray(g, np.float64)
  sq = np.sum(g * g, axis=1)
  d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (g @ g.T), 0.0)
  np.fill_diagonal(d2, 0.0)
  return np.exp(-np.sqrt(d2) / scale).astype(np.float32)


def facility_location_greedy(sim: np.ndarray, k: int) -> np.ndarray:
  """Greedy maximisation of ``F(S) = sum_i max_{j in S} sim[i, j]`` over
  ``|S| = k``; returns the medoids in the order picked (lazy greedy, the
  same picks as the plain greedy with ties to the lowest index).

  ``sim`` must be non-negative (F then is monotone submodular).
  """
  n = sim.shape[0]
  if sim.shape != (n, n):
    raise ValueError(f"similarity must be square, got {sim.shape}")
  k = min(int(k), n)
  cover = np.zeros(n, np.float64)   # max similarity to the chosen medoids
  gains = sim.sum(axis=0, dtype=np.float64)   # exact while S is empty
  heap = [(-float(gains[j]), j) for j in range(n)]
  heapq.heapify(heap)
  fresh = np.ones(n, bool)          # gain computed at the current S
  chosen = []
  while len(chosen) < k and heap:
    neg, j = heapq.heappop(heap)
    if fresh[j]:
      chosen.append(j)
      cover = np.maximum(cover, sim[:, j])
      fresh[:] = False
      continue
    gain = float(np.maximum(sim[:, j] - cover, 0.0).sum())
    fresh[j] = True
    heapq.heappush(heap, (-gain, j))
  return np.asarray(chosen, np.int64)


def select_isolated(proxies: np.ndarray, labels: np.ndarray, *,
                    budget: float, scale: float) -> Dict[str, np.ndarray]:
  """One EPIC selection over the given points.

  Returns:
    ``{"drop": bool (n,), "medoids": int64 indices, "cluster_size": int64
    (n,) (the size of each point's cluster)}``, indices into ``proxies``.
  """
  proxies, labels = np.asarray(proxies), np.asarray(labels)
  n = len(labels)
  if proxies.ndim != 2 or len(proxies) != n:
    raise ValueError(f"proxies must be (n, C) with n = {n}, got "
                     f"{proxies.shape}")
  drop = np.zeros(n, bool)
  size = np.zeros(n, np.int64)
  medoids = []
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    sim = similarity(proxies[rows], scale)
    k = max(1, math.ceil(budget * len(rows)))
    med = facility_location_greedy(sim, k)
    # Each point joins its most similar medoid (a medoid joins itself:
    # similarity 1 is the largest possible).
    owner = med[np.argmax(sim[:, med], axis=1)]
    owner[med] = med
    counts = np.bincount(owner, minlength=len(rows))
    size[rows] = counts[owner]
    drop[rows] = counts[owner] <= 1
    medoids.append(rows[med])
  medoids = np.concatenate(medoids) if medoids else np.zeros(0, np.int64)
  return {"drop": drop, "medoids": medoids, "cluster_size": size}


class Epic:
  """EPIC as pure functions over a state (``hint_jax.train.DefenceHook``
  makes it ``fit``'s hook): ``before_epoch`` runs the scheduled selections
  and ``active_indices`` gives the examples still trained on. Dropped
  examples never come back.

  The state is a dict: ``"epic_active"`` (bool per training example, True
  while it is trained on) and ``"epic"`` (one JSON-ready record per
  selection so far).
  """

  def __init__(self, model, config: EpicConfig, y_train: np.ndarray,
               batch_size: int = 250):
    self.model = model
    self.config = config.validate()
    self.y = np.asarray(y_train)
    self.batch_size = batch_size

  def init(self) -> dict:
    """The state before any selection: every example active."""
    return {"epic_active": np.ones(len(self.y), bool), "epic": []}

  def check(self, state: dict) -> dict:
    """``state`` (e.g. read back from a checkpoint) typed, after checking
    it fits this training set.

    Raises:
      DataError: it does not.
    """
    active = np.asarray(state.get("epic_active"), bool)
    if active.shape != self.y.shape:
      raise DataError(f"EPIC state for {active.shape} examples, this run "
                      f"has {self.y.shape}")
    return {"epic_active": active, "epic": list(state.get("epic") or [])}

  @staticmethod
  def active_indices(state) -> np.ndarray:
    return np.flatnonzero(state["epic_active"])

  def before_epoch(self, state, epoch: int, train_state,
                   x_train: np.ndarray):
    """Returns ``(state, x_train, seconds)``; the images are unchanged."""
    if not self.config.selects_before(epoch):
      return state, x_train, 0.0
    t0 = time.perf_counter()
    idx = self.active_indices(state)
    logits = self._logits(train_state, x_train[idx])
    sel = select_isolated(gradient_proxies(logits, self.y[idx]), self.y[idx],
                          budget=self.config.budget, scale=self.config.scale)
    dropped = idx[sel["drop"]]
    active = state["epic_active"].copy()
    active[dropped] = False
    seconds = time.perf_counter() - t0
    record = {"epoch": epoch, "candidates": int(len(idx)),
              "medoids": int(len(sel["medoids"])),
              "dropped": int(len(dropped)), "active": int(active.sum()),
              "seconds": seconds}
    return ({"epic_active": active, "epic": list(state["epic"]) + [record]},
            x_train, seconds)

  def _logits(self, train_state, x_u8: np.ndarray) -> np.ndarray:
    params, model_state = train_state.params, train_state.model_state
    phi = np.asarray(self.model.features_of_images(
        params, model_state, x_u8, batch_size=self.batch_size), np.float64)
    head = params["head"]
    return phi @ np.asarray(head["kernel"], np.float64) + np.asarray(
        head["bias"], np.float64)

  @staticmethod
  def summary(state) -> dict:
    records = state["epic"]
    return {"epic_selections": records,
            "epic_dropped": int((~state["epic_active"]).sum()),
            "epic_seconds": float(sum(r["seconds"] for r in records))}
