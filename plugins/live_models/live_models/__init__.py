"""refbench plugin: live models as grounders and proposers.

Open-vocabulary detectors and VLMs through transformers' native classes, torchvision's COCO
detectors as a proposer, SAM masks for any proposer's boxes, and OpenAI-compatible endpoints. Each
model family declares its prompt and its coordinate format (a :class:`refbench.BoxFormat`); nothing
is guessed from the numbers a model writes.
"""
