"""Parameter subsets: restrict a pytree (and a loss) to selected leaves.

HINT takes the Hessian and the parameter gradients w.r.t. θ_top (by default
the final Dense layer) only, while the input derivative of I_pert still runs
through the whole network. `restrict` splits θ into θ_top and the frozen rest;
`restrict_loss` turns `loss_one(params, x, y)` into `loss_top(top, x, y)` with
the rest closed over, so every derivative of `loss_top` is w.r.t. θ_top and x.
"""

from collections.abc import Callable, Collection
from typing import Any

import jax

from hint_jax.errors import ConfigError
from hint_jax.influence._closure import as_pytree_callable, closure

Path = tuple[Any, ...]
Select = Callable[[Path], bool] | Collection[str] | str


def path_names(path: tuple[Any, ...]) -> Path:
  """Turns a JAX key path into a tuple of plain names.

  Args:
    path: a key path from `jax.tree.flatten_with_path`.

  Returns:
    The path as a tuple: dict keys and attribute names as they are, sequence
    indices as ints, e.g. `("Dense_1", "kernel")` or `(2, "w")`.
  """
  names = []
  for entry in path:
    if isinstance(entry, jax.tree_util.DictKey):
      names.append(entry.key)
    elif isinstance(entry, jax.tree_util.SequenceKey):
      names.append(entry.idx)
    elif isinstance(entry, jax.tree_util.GetAttrKey):
      names.append(entry.name)
    elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
      names.append(entry.key)
    else:
      names.append(str(entry))
  return tuple(names)


def _as_predicate(select: Select) -> Callable[[Path], bool]:
  if callable(select):
    return select
  keys = {select} if isinstance(select, str) else set(select)
  return lambda path: bool(path) and path[0] in keys


@jax.tree_util.register_pytree_node_class
class Rebuild:
  """Puts a parameter subset back into the full tree (see `restrict`).

  A pytree whose children are the frozen (unselected) leaves and whose
  structure holds the full tree structure and the selection mask, so it can be
  passed through `jax.jit` without retracing when the frozen values change.
  """

  def __init__(self, frozen: tuple[Any, ...], treedef: Any,
               mask: tuple[bool, ...]):
    self.frozen = tuple(frozen)
    self.treedef = treedef
    self.mask = tuple(mask)

  def __call__(self, sub_params: Any) -> Any:
    """Returns the full tree with the selected leaves from `sub_params`."""
    sub_leaves = jax.tree.leaves(sub_params)
    if len(sub_leaves) != sum(self.mask):
      raise ConfigError(f"expected {sum(self.mask)} selected leaves, got "
                        f"{len(sub_leaves)}")
    sub_iter, frozen_iter = iter(sub_leaves), iter(self.frozen)
    leaves = [next(sub_iter) if m else next(frozen_iter) for m in self.mask]
    return jax.tree.unflatten(self.treedef, leaves)

  def tree_flatten(self):
    return self.frozen, (self.treedef, self.mask)

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(tuple(children), *aux)


def _prune(node: Any) -> Any:
  """Drops dict entries that hold no leaves (after masking with None)."""
  if isinstance(node, dict):
    pruned = {k: _prune(v) for k, v in node.items()}
    return {k: v for k, v in pruned.items() if jax.tree.leaves(v)}
  return node


def restrict(params: Any, select: Select) -> tuple[Any, Rebuild]:
  """Splits `params` into a selected subset and a function that rebuilds it.

  Args:
    params: parameter pytree (nested dicts, as Flax makes them, or any pytree).
    select: which leaves to keep: a predicate on the leaf's path (a tuple of
      names, see `path_names`, e.g. `lambda p: p[0] == "Dense_1"`), or a
      top-level key name or collection of them.

  Returns:
    `(sub_params, rebuild)`: `sub_params` has the structure of `params` with
    unselected leaves removed (dict entries left empty are dropped; inside
    lists and tuples they become None); `rebuild(sub)` returns `params` with
    the selected leaves replaced by those of `sub`.

  Raises:
    ConfigError: if nothing is selected.

  Example:
    >>> params = {"body": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(2)}}
    >>> top, rebuild = restrict(params, ["head"])
    >>> top
    {'head': {'w': Array([1., 1.], dtype=float32)}}
  """
  predicate = _as_predicate(select)
  with_path, treedef = jax.tree.flatten_with_path(params)
  mask = tuple(bool(predicate(path_names(path))) for path, _ in with_path)
  if not any(mask):
    available = sorted({str(path_names(p)[0]) for p, _ in with_path if p})
    raise ConfigError(f"parameter selection {select!r} matches no leaf; "
                      f"top-level keys are {available}")
  leaves = [leaf for _, leaf in with_path]
  masked = jax.tree.unflatten(
      treedef, [leaf if m else None for leaf, m in zip(leaves, mask)])
  frozen = tuple(leaf for leaf, m in zip(leaves, mask) if not m)
  return _prune(masked), Rebuild(frozen, treedef, mask)


def _restricted_call(loss_one, rebuild, sub_params, *args):
  return loss_one(rebuild(sub_params), *args)


def restrict_loss(loss_one: Callable[..., jax.Array],
                  rebuild: Rebuild) -> Callable[..., jax.Array]:
  """Turns `loss_one(params, *args)` into `loss_sub(sub_params, *args)`.

  The unselected parameters are closed over (held by `rebuild`); derivatives
  of `loss_sub` are w.r.t. the subset and the other arguments. The result is a
  pytree callable (see `as_pytree_callable`), so it can be handed to jitted
  functions without retracing when the frozen parameters change.

  Args:
    loss_one: per-example loss `loss_one(params, x, y) -> scalar`.
    rebuild: the second output of `restrict`.

  Returns:
    `loss_sub(sub_params, x, y) -> scalar`.
  """
  return closure(_restricted_call, as_pytree_callable(loss_one), rebuild)
