"""A PyTorch reference of the MNIST ConvNet training step, for side-by-side
timing only (``hint-jax bench train`` uses it when torch is importable).

It mirrors the authors' setup: the SPEC §1 ConvNet in PyTorch defaults, plain
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
