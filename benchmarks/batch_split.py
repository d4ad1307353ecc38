"""Does cutting a training batch in parts, each on its own thread, use two cores better than
two OpenMP threads on the whole batch? (issue 18; a measurement, not yet in ``models train``)

The bare bf16 step of a shipped config's generator (forward, MSE, backward, fused Adam), one
OpenMP thread per calling thread: the whole batch on one thread, against the batch cut in
``--parts`` parts whose forward and backward (``torch.autograd.grad``) run at once on a thread
each, their gradients summed in a fixed order (deterministic), then one Adam step. Run it with
nothing else busy: the figure is the speed-up the split could bring before the render workers
take their share of the cores.

    python benchmarks/batch_split.py [--config default] [--parts 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from models.generator import RRDBNet  # noqa: E402
from models.precision import native_cpu_bf16  # noqa: E402
from models.train_config import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="shipped config name or file (default: default)")
    parser.add_argument("--parts", type=int, default=2, help="parts of the batch, one thread each (default: 2)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 5 timed steps per variant (default: 5)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = load_config(args.config, ["out=unused", "synthetic.fraction=0", "data=unused"])
    model = RRDBNet(config.generator).train().to(memory_format=torch.channels_last)
    params = list(model.parameters())
    optimiser = torch.optim.Adam(params, lr=2e-4, fused=True)
    n, size = config.batch_size, config.crop_size
    inputs = torch.rand(n, config.generator.in_channels, size, size).contiguous(memory_format=torch.channels_last)
    target = torch.rand(n, 3, size, size)
    dtype = torch.bfloat16 if native_cpu_bf16() else torch.float32
    pool = ThreadPoolExecutor(args.parts)

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is torch.bfloat16):  # thread-local: entered per thread
            restored = model(x)
        return torch.nn.functional.mse_loss(restored.float(), y)

    def whole() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_of(inputs, target).backward()
        optimiser.step()

    def split() -> None:
        parts = zip(inputs.tensor_split(args.parts), target.tensor_split(args.parts))
        futures = [pool.submit(lambda x, y: torch.autograd.grad(loss_of(x, y) * (len(x) / n), params), x, y)
                   for x, y in parts]
        grads = [f.result() for f in futures]
        for i, p in enumerate(params):
            p.grad = sum(g[i] for g in grads[1:]) + grads[0][i]
        optimiser.step()

    times: dict[str, list[float]] = {"whole batch, 1 thread": [], f"{args.parts} parts, a thread each": []}
    for _ in range(args.rounds):
        for (name, fn) in zip(times, (whole, split)):
            for _ in range(2):
                fn()
            for _ in range(5):
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
    medians = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for name, median in medians.items():
        print(f"{name}: {median:.4f} s per step (median of {len(times[name])}, {dtype})")
    first, second = medians.values()
    print(f"speed-up: {first / second:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
