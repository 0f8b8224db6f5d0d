"""The runner, one stage per module: build components, propose, prepare (workers), batch views
for the encoder, place the work, judge and journal, and the session that runs them.

All phrases about an image travel together, so each candidate view is rendered and encoded once
per image and method; views of many images go through the encoder in one batch; each phrase's
text is encoded once. Predictions are journaled as they are produced, so a killed run resumes
where it stopped.
"""

from .build import Bench, Method, build, build_component, build_parts
from .place import Placement, placement, worker_count
from .prepare import load_image
from .proposals import Proposals, propose_all
from .session import evaluate, run_benchmark
from .transfer import join_tensors

__all__ = ["Bench", "Method", "Placement", "Proposals", "build", "build_component", "build_parts", "evaluate", "join_tensors", "load_image",
           "placement", "propose_all", "run_benchmark", "worker_count"]
