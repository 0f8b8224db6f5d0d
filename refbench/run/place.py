"""Stage 5: where the work runs. Every ``auto`` worker count is decided here.

Two placements:

- the workers prepare, the main process scores (``main``): GPU models always run so, since
  CUDA does not survive a fork;
- each worker prepares and scores its own share of the images with its own copy of the
  models, on one thread (``workers``): on a machine with few cores, single-threaded pipelines
  side by side keep every core busy while the others decode. One thread each, because
  OpenMP's thread pool does not survive a fork.

Under torchrun, "the CPUs" are this rank's equal share of the machine's (see
:func:`~refbench.run.world.cpu_share`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..config import RunnerConfig
from ..errors import RefbenchError
from .components import Method
from .world import cpu_share

MAX_AUTO_WORKERS = 8  # model copies (worker scoring) or preparing processes that ``auto`` starts at most


def worker_count(workers: int | str) -> int:
    """Background processes for ``workers`` when the main process runs the model (evaluation with
    ``scoring: main``, training): ``auto`` leaves two CPUs to the model, at most 8 (0 on 2 CPUs)."""
    if workers == "auto":
        return max(0, min(MAX_AUTO_WORKERS, cpu_share() - 2))
    return int(workers)


class Placement(NamedTuple):
    """Where a run's work happens (``runner.workers`` and ``runner.scoring`` resolved)."""

    workers: int  # background processes; 0: everything in the main process
    scoring_in_workers: bool  # each worker prepares and scores its share; else workers prepare, the main process scores

    def describe(self, images: int) -> dict[str, object]:
        """What run.json records: the workers actually started for ``images`` images."""
        return {"workers": min(self.workers, images), "scoring": "workers" if self.scoring_in_workers else "main",
                "threads": 1 if self.scoring_in_workers else torch.get_num_threads()}


def placement(runner: RunnerConfig, methods: Sequence[Method]) -> Placement:
    """``scoring: auto`` scores in workers when every model is on the CPU, CUDA is not in use, and
    there are 2 to 8 CPUs (one single-threaded pipeline per CPU uses them all; beyond that, one
    thread per worker would leave cores idle). Then ``workers: auto`` is one per CPU."""
    cpus = cpu_share()
    gpu = [m.id for m in methods if m.on_gpu]
    if runner.scoring == "workers" and gpu:
        raise RefbenchError(f"runner.scoring is workers, but method {gpu[0]!r} runs on a GPU",
                            "use runner.scoring: main or auto (GPU models are scored in the main process)")
    auto = not gpu and not torch.cuda.is_initialized() and 1 < cpus <= MAX_AUTO_WORKERS
    if not (runner.scoring == "workers" or (runner.scoring == "auto" and auto)):
        return Placement(worker_count(runner.workers), False)
    n = min(cpus, MAX_AUTO_WORKERS) if runner.workers == "auto" else int(runner.workers)
    return Placement(n, n > 0)
