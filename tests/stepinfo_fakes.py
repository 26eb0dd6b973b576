"""StepInfo objects for testing callbacks without a run, counting the reads that would
wait for the device."""

import torch

from stylekit import StepInfo


class Counter:
    def __init__(self):
        self.loss_reads = 0
        self.stops = 0


def fake_steps(total: int, counter: Counter, stages: int = 1, size: int = 8):
    """StepInfos for steps 1..total, spread evenly over `stages`."""
    content = torch.rand(1, 3, size, size)
    styles = [torch.rand(1, 3, size, size)]
    per_stage = -(-total // stages)

    def losses(step):
        def read():
            counter.loss_reads += 1
            return {"total": 100.0 / step, "content": 60.0 / step, "gram": 40.0 / step}
        return read

    def stop():
        counter.stops += 1

    for step in range(1, total + 1):
        yield StepInfo(stage=(step - 1) // per_stage + 1, stages=stages, step=step, total=total, seconds=0.01 * step,
                       image=torch.full((1, 3, size, size), step / total), content=content, styles=styles,
                       _losses=losses(step), _stop=stop)
