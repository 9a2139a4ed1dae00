"""A PyTorch reference of the MNIST ConvNet training step, for side-by-side
timing only (``hint-jax bench train`` uses it when torch is importable).

It mirrors the authors' setup: the paper's MNIST ConvNet in PyTorch defaults, plain
SGD 0.01, batch 128, float32, on the CPU with torch's default threads.
"""


def make_torch_step(batch_size: int, seed: int = 0):
  """Returns ``run(num_steps)`` that trains on random uint8 batches held in
  memory (data loading excluded, as for the JAX side)."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  torch.manual_seed(seed)
  net = nn.Sequential(
      nn.Conv2d(1, 40, 5), nn.BatchNorm2d(40), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(40, 100, 5), nn.BatchNorm2d(100), nn.ReLU(), nn.AvgPool2d(2),
      nn.Flatten(), nn.Linear(1600, 10))
  opt = torch.optim.SGD(net.parameters(), lr=0.01)
  loss_fn = nn.CrossEntropyLoss()
  gen = torch.Generator().manual_seed(seed)
  x_u8 = torch.randint(0, 256, (batch_size * 8, 1, 28, 28), dtype=torch.uint8,
                       generator=gen)
  y = torch.randint(0, 10, (batch_size * 8,), generator=gen)
  net.train()

  def run(num_steps):
    for i in range(num_steps):
      j = (i % 8) * batch_size
      xb = x_u8[j:j + batch_size].float() / 255.0
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(net(xb), y[j:j + batch_size])
      loss.backward()
      opt.step()
    return float(loss.detach())

  return run


def make_torch_resnet_step(batch_size: int, stage_sizes=(2, 2, 2, 2),
                           widths=(64, 128, 256, 512), seed: int = 0):
  """Returns ``run(num_steps)`` training the CIFAR ResNet of
  ``hint_jax.models.ResNet`` (same blocks, widths, in-model normalisation)
  in PyTorch with the paper's CIFAR-10 step: SGD 0.1, Nesterov momentum
  0.9, weight decay 5e-4, random crop with 4-pixel zero padding and
  horizontal flip per image (done on the batch in torch, as the JAX step
  does on device), on random uint8 batches held in memory."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.proj = None
      if stride != 1 or cin != cout:
        self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return torch.relu((x if self.proj is None else self.proj(x)) + y)

  layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU()]
  cin = widths[0]
  for stage, (blocks, width) in enumerate(zip(stage_sizes, widths)):
    for b in range(blocks):
      layers.append(Block(cin, width, 2 if (stage > 0 and b == 0) else 1))
      cin = width
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
  torch.manual_seed(seed)
  net = nn.Sequential(*layers)
  mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
  std = torch.tensor((0.2023, 0.1994, 0.2010)).view(1, 3, 1, 1)
  opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9,
                        nesterov=True, weight_decay=5e-4)
  loss_fn = nn.CrossEntropyLoss()
  gen = torch.Generator().manual_seed(seed)
  x_u8 = torch.randint(0, 256, (batch_size * 4, 3, 32, 32), dtype=torch.uint8,
                       generator=gen)
  y = torch.randint(0, 10, (batch_size * 4,), generator=gen)
  net.train()

  def augment(xb):
    padded = nn.functional.pad(xb, (4, 4, 4, 4))
    offs = torch.randint(0, 9, (len(xb), 2), generator=gen)
    flips = torch.rand(len(xb), generator=gen) < 0.5
    out = torch.stack([padded[i, :, r:r + 32, c:c + 32]
                       for i, (r, c) in enumerate(offs.tolist())])
    out[flips] = out[flips].flip(-1)
    return out

  def run(num_steps):
    for i in range(num_steps):
      j = (i % 4) * batch_size
      xb = augment(x_u8[j:j + batch_size].float() / 255.0)
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(net((xb - mean) / std), y[j:j + batch_size])
      loss.backward()
      opt.step()
    return float(loss.detach())

  return run


def make_torch_hint_phases(seed: int = 0, num_pool: int = 2048):
  """The cost structure of the authors' PyTorch HINT phases, rebuilt for
  side-by-side timing (our reconstruction from their description and
  the paper's method, not their code): the paper's ConvNet in eval mode on random
  MNIST-shaped data, theta_top = the final Linear layer.

  Returns a dict of callables, each ``fn(count) -> seconds``:
    * ``lissa``: ``count`` LiSSA steps on batches of 50 (double-backward
      HVP w.r.t. theta_top, as the authors' s_test);
    * ``up_loop``: I_up for ``count`` examples one at a time
      (``autograd.grad`` of the example's loss, dot s_test);
    * ``pert_loop``: I_pert for ``count`` examples one at a time (the
      input gradient of <grad_theta l, s_test>, double backward);
    * ``write_loop``: the noise update and uint8 write-back for ``count``
      examples one at a time (clamp, subtract, ``.mul(255).byte()``, store
      into the dataset's uint8 array).
  """
  import time  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  torch.manual_seed(seed)
  body = nn.Sequential(
      nn.Conv2d(1, 40, 5), nn.BatchNorm2d(40), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(40, 100, 5), nn.BatchNorm2d(100), nn.ReLU(), nn.AvgPool2d(2),
      nn.Flatten())
  head = nn.Linear(1600, 10)
  body.eval()
  head.eval()
  top = list(head.parameters())
  gen = torch.Generator().manual_seed(seed)
  x_u8 = torch.randint(0, 256, (num_pool, 1, 28, 28), dtype=torch.uint8,
                       generator=gen)
  y = torch.randint(0, 10, (num_pool,), generator=gen)
  s_test = [torch.randn_like(p) * 1e-2 for p in top]
  loss_fn = nn.CrossEntropyLoss()

  def loss_of(xb, yb):
    return loss_fn(head(body(xb)), yb)

  def lissa(count):
    t0 = time.perf_counter()
    v = [torch.randn_like(p) for p in top]
    h = [t.clone() for t in v]
    for j in range(count):
      idx = torch.randint(0, num_pool, (50,), generator=gen)
      xb = x_u8[idx].float() / 255.0
      grads = torch.autograd.grad(loss_of(xb, y[idx]), top,
                                  create_graph=True)
      hv = torch.autograd.grad(grads, top, grad_outputs=h)
      h = [a + 0.99 * b - c / 50.0 for a, b, c in zip(v, h, hv)]
    return time.perf_counter() - t0

  def up_loop(count):
    t0 = time.perf_counter()
    out = []
    for i in range(count):
      xb = x_u8[i % num_pool][None].float() / 255.0
      g = torch.autograd.grad(loss_of(xb, y[i % num_pool][None]), top)
      out.append(float(sum(torch.sum(a * b) for a, b in zip(g, s_test))))
    return time.perf_counter() - t0

  def pert_loop(count):
    t0 = time.perf_counter()
    for i in range(count):
      xb = (x_u8[i % num_pool][None].float() / 255.0).requires_grad_(True)
      g = torch.autograd.grad(loss_of(xb, y[i % num_pool][None]), top,
                              create_graph=True)
      dot = sum(torch.sum(a * b) for a, b in zip(g, s_test))
      torch.autograd.grad(dot, xb)[0].neg()
    return time.perf_counter() - t0

  store = x_u8.numpy().copy()
  deltas = torch.zeros((num_pool, 1, 28, 28))
  infl = torch.randn((num_pool, 1, 28, 28)) * 1e-2

  def write_loop(count):
    t0 = time.perf_counter()
    for i in range(count):
      k = i % num_pool
      deltas[k] = torch.clamp(deltas[k] + 0.1 * infl[k], -16 / 255, 16 / 255)
      x_orig = torch.from_numpy(x_u8.numpy()[k]).float() / 255.0
      x_new = torch.clamp(x_orig - deltas[k], 0.0, 1.0)
      store[k] = x_new.mul(255).byte().numpy()
    np.asarray(store)
    return time.perf_counter() - t0

  return {"lissa": lissa, "up_loop": up_loop, "pert_loop": pert_loop,
          "write_loop": write_loop}
