"""K-FAC and EK-FAC influence functions over a network's Dense and
convolution layers.

Per tapped layer l (``apply`` from `hint_jax.models.capture.tapped_apply`:
its inputs ā, with a 1 appended for the bias, as patches for a
convolution, and its output gradients δ), the Gauss-Newton block is
approximated by A ⊗ S,

    A = E[ā āᵀ] (over examples and locations),
    S = E[Σ_locations δ δᵀ] (over examples and labels ŷ),

(Martens & Grosse, ICML 2015; convolutions: Grosse & Martens, ICML 2016).
``fisher`` picks the labels of δ: "exact" sums over every class weighted by
the model's probability (S is then exact for a single Dense layer: with
one example A ⊗ S is that example's Gauss-Newton block), "sampled" draws
one label per example from the model (the key), "empirical" uses the true
labels. With the eigenbases A = Q_A Λ_A Q_Aᵀ and S = Q_S Λ_S Q_Sᵀ:

- ``kfac``: (A ⊗ S + λI)⁻¹ with the eigenvalues Λ_A ⊗ Λ_S;
- ``ekfac``: the same eigenbasis with the eigenvalues replaced by the
  diagonal of the Gauss-Newton matrix in it, E[((Q_A ⊗ Q_S)ᵀ vec G)²]
  over examples and labels (George et al., NeurIPS 2018; Grosse et al.
  2023).

score(z, z_i) = Σ_l ⟨(C_l + λI)⁻¹ G_l(z), G_l(z_i)⟩ with G_l the layer's
loss gradient (kernel rows, then the bias row): the influence function
over the tapped layers' parameters only (not BatchNorm's), positive = z_i
helps z. The factors are computed over the training set or a subsample of
``curvature_examples`` (the key), in chunks of ``chunk_size``.
"""

import jax
import jax.numpy as jnp

from hint_jax import xla_options
from hint_jax.attribution.core import Estimator, register
from hint_jax.errors import ConfigError

FISHERS = ("exact", "sampled", "empirical")


def _check_apply(apply):
  if not hasattr(apply, "taps"):
    raise ConfigError("kfac and ekfac need each layer's inputs and output "
                      "gradients: pass apply=hint_jax.models.capture."
                      "tapped_apply(model, model_state)")


def _with_bias(a, bias):
  if not bias:
    return a
  return jnp.concatenate([a, jnp.ones(a.shape[:-1] + (1,), a.dtype)], -1)


def _deltas(apply, params, x, cotangents_of):
  """``(layers, inputs, deltas)``: deltas[name] (c, n, L, d_out) for each
  of the cotangents ``cotangents_of(logits)`` (c, n, K) on the logits."""
  layers = apply.layers(params, x)
  dtype = jax.tree.leaves(params)[0].dtype
  zeros = {name: jnp.zeros(shape, dtype)
           for name, shape in apply.output_shapes(params, x).items()}
  logits, vjp, inputs = jax.vjp(lambda pt: apply.taps(params, x, pt), zeros,
                                has_aux=True)
  cot = cotangents_of(logits)
  deltas = jax.vmap(lambda u: vjp(u)[0])(cot)
  deltas = {l.name: deltas[l.name].reshape(
      cot.shape[:2] + (-1, l.d_out)) for l in layers}
  inputs = {l.name: _with_bias(inputs[l.name], l.bias) for l in layers}
  return layers, inputs, deltas


def _label_cotangents(y, fisher, key):
  """Cotangents on the logits whose vjp gives δ: ∂ℓ/∂logits = p − e_ŷ,
  for the labels of ``fisher`` (scaled by √p_ŷ over every class for
  "exact")."""
  def make(logits):
    p = jax.nn.softmax(logits)
    k = logits.shape[-1]
    if fisher == "exact":
      eye = jnp.eye(k, dtype=p.dtype)
      return jnp.sqrt(p).T[:, :, None] * (p[None] - eye[:, None, :])
    if fisher == "sampled":
      label = jax.random.categorical(key, logits)
    else:
      label = y
    return (p - jax.nn.one_hot(label, k, dtype=p.dtype))[None]
  return make


def _factors_chunk_impl(apply, params, x, y, key, fisher):
  layers, inputs, deltas = _deltas(apply, params, x,
                                   _label_cotangents(y, fisher, key))
  a = {l.name: jnp.einsum("nti,ntj->ij", inputs[l.name], inputs[l.name])
       for l in layers}
  s = {l.name: jnp.einsum("cnti,cntj->ij", deltas[l.name], deltas[l.name])
       for l in layers}
  return a, s


_factors_chunk = xla_options.jit(_factors_chunk_impl,
                                 static_argnames=("fisher",))


def _corrected_chunk_impl(apply, params, x, y, key, fisher, bases):
  layers, inputs, deltas = _deltas(apply, params, x,
                                   _label_cotangents(y, fisher, key))
  out = {}
  for l in layers:
    qa, qs = bases[l.name]
    ga = jnp.einsum("nti,ia->nta", inputs[l.name], qa)
    gs = jnp.einsum("cnto,ob->cntb", deltas[l.name], qs)
    out[l.name] = jnp.sum(jnp.einsum("nta,cntb->cnab", ga, gs) ** 2,
                          axis=(0, 1))
  return out


_corrected_chunk = xla_options.jit(_corrected_chunk_impl,
                                   static_argnames=("fisher",))


def _chunks(x, y, size):
  return [(x[s:s + size], y[s:s + size]) for s in range(0, x.shape[0], size)]


def _prepare(ekfac):
  def prepare(apply, members, train, key, settings):
    _check_apply(apply)
    fisher = settings["fisher"]
    if fisher not in FISHERS:
      raise ConfigError(f"fisher must be one of {FISHERS}, got {fisher!r}")
    if not settings["damping"] >= 0:
      raise ConfigError(f"damping must be >= 0, got {settings['damping']}")
    params = members[0]
    x, y = train
    key_sub, key_labels = jax.random.split(key)
    m = settings["curvature_examples"]
    if m is not None and (isinstance(m, bool) or not isinstance(m, int)
                          or m <= 0):
      raise ConfigError(f"curvature_examples must be a count > 0 or None, "
                        f"got {m!r}")
    if m is not None and int(m) < x.shape[0]:
      idx = jnp.sort(jax.random.choice(key_sub, x.shape[0], (int(m),),
                                       replace=False))
      x, y = x[idx], y[idx]
    n = x.shape[0]
    layers = apply.layers(params, x[:1])
    chunks = _chunks(x, y, int(settings["chunk_size"]))
    a_sum, s_sum = None, None
    for i, (xc, yc) in enumerate(chunks):
      a, s = _factors_chunk(apply, params, xc, yc,
                            jax.random.fold_in(key_labels, i), fisher)
      a_sum = a if a_sum is None else jax.tree.map(jnp.add, a_sum, a)
      s_sum = s if s_sum is None else jax.tree.map(jnp.add, s_sum, s)
    arrays, bases = {}, {}
    for j, l in enumerate(layers):
      a = a_sum[l.name] / (n * l.locations)
      s = s_sum[l.name] / n
      lam_a, qa = jnp.linalg.eigh(a)
      lam_s, qs = jnp.linalg.eigh(s)
      bases[l.name] = (qa, qs)
      arrays[f"l{j}"] = {"qa": qa, "qs": qs,
                         "eig": jnp.outer(lam_a, lam_s)}
    if ekfac:
      total = None
      for i, (xc, yc) in enumerate(chunks):
        part = _corrected_chunk(apply, params, xc, yc,
                                jax.random.fold_in(key_labels, i), fisher,
                                bases)
        total = part if total is None else jax.tree.map(jnp.add, total, part)
      for j, l in enumerate(layers):
        arrays[f"l{j}"]["eig"] = total[l.name] / n
    return arrays
  return prepare


def _layer_grads(apply, params, x, y):
  """``(layers, {name: (n, d_in(+1), d_out)})``: each example's loss
  gradient for each tapped layer's kernel (and bias row)."""
  layers, inputs, deltas = _deltas(
      apply, params, x,
      lambda logits: (jax.nn.softmax(logits) - jax.nn.one_hot(
          y, logits.shape[-1], dtype=logits.dtype))[None])
  return layers, {l.name: jnp.einsum("nti,nto->nio", inputs[l.name],
                                     deltas[l.name][0]) for l in layers}


def _test(state, extras, apply, x, y):
  del extras
  _check_apply(apply)
  layers, grads = _layer_grads(apply, state.members[0], x, y)
  damping = state.options["damping"]
  parts = []
  for j, l in enumerate(layers):
    f = state.arrays[f"l{j}"]
    g = jnp.einsum("ia,nio,ob->nab", f["qa"], grads[l.name], f["qs"])
    g = g / (f["eig"] + damping)
    g = jnp.einsum("ia,nab,ob->nio", f["qa"], g, f["qs"])
    parts.append(g.reshape(g.shape[0], -1))
  return jnp.concatenate(parts, axis=1)[None]


def _train(state, extras, apply, x, y):
  del extras
  _check_apply(apply)
  layers, grads = _layer_grads(apply, state.members[0], x, y)
  return jnp.concatenate([grads[l.name].reshape(x.shape[0], -1)
                          for l in layers], axis=1)[None]


_DEFAULTS = {"damping": 0.01, "fisher": "sampled",
             "curvature_examples": None, "chunk_size": 64}

register(Estimator(
    name="kfac", summary="(A⊗S+λI)⁻¹ per Dense/conv layer (K-FAC; needs "
    "capture.tapped_apply)",
    defaults=dict(_DEFAULTS), prepare=_prepare(False), test_features=_test,
    train_features=_train))

register(Estimator(
    name="ekfac", summary="K-FAC's eigenbasis, eigenvalues corrected to the "
    "GGN's (EK-FAC; needs capture.tapped_apply)",
    defaults=dict(_DEFAULTS), prepare=_prepare(True), test_features=_test,
    train_features=_train))
