"""Seconds for one VGG-19 forward and backward pass to the image (to conv5_1, as one step of
the chapter's loop) in fp32 and bf16, contiguous and channels_last, on this machine's CPU.
Tells whether bf16 pays here; `run.precision = "auto"` decides the same from the CPU flags.

    python benchmarks/precision.py --h 150 --w 225 --repeats 2
"""

import argparse
import time

import torch

from stylekit.builtins.vgg19 import VGG19
from stylekit.recipe.devices import cpu_has_fast_bf16

parser = argparse.ArgumentParser()
parser.add_argument("--h", type=int, default=300)
parser.add_argument("--w", type=int, default=450)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

layers = frozenset(["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_4", "conv5_1"])
print(f"{args.w}x{args.h}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
      f"AMX/AVX-512-BF16 flags: {cpu_has_fast_bf16()}")
results = {}
for dtype in (torch.float32, torch.bfloat16):
    for layout in (torch.contiguous_format, torch.channels_last):
        net = VGG19(VGG19.Params(), "random")
        net.truncate(layers)
        net = net.to(dtype=dtype, memory_format=layout)
        image = torch.rand(1, 3, args.h, args.w, requires_grad=True)
        times = []
        for _ in range(args.repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            features = net.features(image.to(dtype).contiguous(memory_format=layout), layers)
            sum(f.float().square().mean() for f in features.values()).backward()
            times.append(time.perf_counter() - start)
        results[(dtype, layout)] = min(times[1:])
        print(f"{str(dtype):<16}{str(layout):<26}{results[(dtype, layout)]:.3f} s/step")
base = results[(torch.float32, torch.contiguous_format)]
for key, seconds in results.items():
    print(f"{str(key[0]):<16}{str(key[1]):<26}{base / seconds:.2f}x the speed of fp32 contiguous")
