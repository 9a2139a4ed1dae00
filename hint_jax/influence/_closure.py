"""Callables that carry their arrays as pytree leaves.

A Python closure over arrays is opaque to `jax.jit`: passed as a static
argument it is hashed by identity, so a new closure (say, over new parameters)
recompiles. A `Closure` keeps its arrays as pytree children and its function and
static options as tree metadata, so it can be passed to a jitted function as an
ordinary argument: new array values retrace nothing, as with
`jax.tree_util.Partial`, which this extends with hashable static keywords.
"""

from typing import Any, Callable

import jax


@jax.tree_util.register_pytree_node_class
class Closure:
  """`fn(*dynamic, *args, **static)` with `dynamic` as pytree children.

  Attributes:
    fn: the function; part of the tree structure (compared by identity).
    dynamic: tuple of pytrees (arrays, other closures); the tree's children.
    static: tuple of sorted `(name, value)` pairs of hashable keyword options;
      part of the tree structure.
  """

  def __init__(self, fn: Callable[..., Any], dynamic: tuple[Any, ...],
               static: tuple[tuple[str, Any], ...] = ()):
    self.fn = fn
    self.dynamic = tuple(dynamic)
    self.static = tuple(static)

  def __call__(self, *args):
    return self.fn(*self.dynamic, *args, **dict(self.static))

  def __repr__(self):
    name = getattr(self.fn, "__name__", repr(self.fn))
    return f"Closure({name}, static={dict(self.static)})"

  def tree_flatten(self):
    return self.dynamic, (self.fn, self.static)

  @classmethod
  def tree_unflatten(cls, aux, children):
    fn, static = aux
    return cls(fn, tuple(children), static)


def closure(fn: Callable[..., Any], *dynamic: Any, **static: Any) -> Closure:
  """Returns `Closure(fn, dynamic, static)`; see `Closure`."""
  return Closure(fn, dynamic, tuple(sorted(static.items())))


def as_pytree_callable(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Makes `fn` safe to pass through `jax.jit` as a (non-static) argument.

  A callable that already is a pytree with structure (a `Closure`, a
  `jax.tree_util.Partial`, a registered class) is returned unchanged; a plain
  function is wrapped in a leafless `jax.tree_util.Partial`, so it becomes part
  of the tree structure and jit caches on its identity.

  Args:
    fn: any callable.

  Returns:
    A callable pytree equivalent to `fn`.
  """
  if jax.tree_util.treedef_is_leaf(jax.tree.structure(fn)):
    return jax.tree_util.Partial(fn)
  return fn
