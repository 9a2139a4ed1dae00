"""The package's shape: no function in ``hint_jax/`` longer than 80 lines
of body (its docstring aside), so a job reads as named steps."""

import ast
import pathlib

import hint_jax

LIMIT = 80


def _body_lines(node) -> int:
  body = node.body
  if (body and isinstance(body[0], ast.Expr)
      and isinstance(body[0].value, ast.Constant)
      and isinstance(body[0].value.value, str)):
    body = body[1:]
  return 0 if not body else body[-1].end_lineno - body[0].lineno + 1


def test_no_function_is_longer_than_the_limit():
  root = pathlib.Path(hint_jax.__file__).parent
  long = []
  for path in sorted(root.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = _body_lines(node)
        if lines > LIMIT:
          long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} "
                      f"({lines} lines)")
  assert not long, "functions over the limit: " + "; ".join(long)


def test_the_count_sees_a_long_function():
  source = "def f():\n  '''doc'''\n" + "  x = 1\n" * (LIMIT + 1)
  node = ast.parse(source).body[0]
  assert _body_lines(node) == LIMIT + 1
