"""Open-vocabulary detectors as grounders: the phrase is the text query, one of its boxes the answer.

Both run through transformers' ``AutoModelForZeroShotObjectDetection`` and the processor's own
``post_process_grounded_object_detection``, asked for normalised boxes (no ``target_sizes``), which
the family's declared :class:`refbench.BoxFormat` maps to pixels of the original image:

- **Grounding DINO** (``grounding_dino``, ``mm-grounding-dino``): the query is the lower-cased
  phrase ending in "." (IDEA-Research/GroundingDINO's README: "separate different category names
  with ."; the model card lower-cases its queries). Boxes are normalised xyxy of the image itself:
  the processor pads a batch to its largest image and the pixel mask keeps the padding out, as in
  DETR (``post_process_grounded_object_detection`` scales them by each image's own ``(h, w)``). Pairs
  share a batch only when their images have the same size, so padding never changes an answer.
- **OWLv2** (``owlv2``): the query is ``[[phrase]]``, truncated to the tokenizer's 16 tokens. The
  image processor pads each image at its bottom and right to a square before resizing it
  (``Owlv2ImageProcessor.pad``), so boxes are normalised to that square of side max(h, w):
  ``_scale_boxes`` multiplies both axes by it (transformers PR #30686 fixed older versions that did
  not). Declared here as a top-left letterbox of input size (side, side).

The answer is the highest-scoring box (``choice: score``, the rule of Grounding DINO's REC
evaluation, IDEA-Research/GroundingDINO issue #44), or the largest of the boxes scoring above
``threshold`` (``choice: largest``, for phrases that name a group). With ``threshold`` above 0, a
phrase whose boxes all score at or below it has no answer (``below_threshold``, a miss). Boxes
are clipped to the image before decoding, as detectors' own post-processing does. The journal
keeps each answer's score and normalised box, as the model gave it, as its raw text.
"""

from __future__ import annotations

from typing import Any, ClassVar, Hashable, Literal, Sequence

from PIL import Image
from pydantic import Field, model_validator

from refbench import Answer, BoxFormat, ImageItem

from .base import ModelGrounder
from .hub import ModelOptions, load, load_processor


class DetectorOptions(ModelOptions):
    """Options of the open-vocabulary detector grounders."""

    threshold: float = Field(0.0, ge=0.0, le=1.0, description="boxes scoring at or below this never answer; none left: a miss. 0: every box may")
    choice: Literal["score", "largest"] = Field("score", description=(
        "which box answers: score, the highest-scoring; largest, the largest of those scoring above threshold"))

    @model_validator(mode="after")
    def _largest_needs_a_threshold(self) -> "DetectorOptions":
        if self.choice == "largest" and self.threshold == 0:
            raise ValueError("choice: largest needs a threshold above 0 (with 0 every one of the model's boxes qualifies)")
        return self


class DetectorGrounder(ModelGrounder):
    """The shared part: load, batch, post-process, choose the best box, decode through the format."""

    Options = DetectorOptions

    #: each choice rule in words, as run.json records it
    CHOICES: ClassVar[dict[str, str]] = {"score": "the highest-scoring box",
                                         "largest": "the largest box scoring above the threshold"}
    #: the input frame's size, as run.json records it, when boxes are relative to an input
    input_frame: ClassVar[str | None] = None

    def build(self) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.processor = load_processor(AutoProcessor, self.folder, self.options.model)
        self.model = load(AutoModelForZeroShotObjectDetection, self.folder, self.options.model, self.device, self.dtype,
                          self.options.attn_implementation)  # type: ignore[attr-defined]

    def query(self, phrase: str) -> str:
        """The text query the model is given for ``phrase``."""
        return phrase

    def encode(self, images: Sequence[Image.Image], queries: Sequence[str]) -> Any:
        """The processor's inputs for one batch of pairs."""
        raise NotImplementedError

    def detections(self, outputs: Any, inputs: Any) -> list[dict[str, Any]]:
        """The processor's post-processing: per pair, ``scores`` and normalised xyxy ``boxes``."""
        raise NotImplementedError

    def frame(self, width: int, height: int) -> tuple[BoxFormat, tuple[float, float]]:
        """The declared format of an image's boxes and the normalised extent of the image in it."""
        return BoxFormat(box_format="xyxy", scale="normalised"), (1.0, 1.0)

    def answer(self, images: Sequence[Image.Image], items: Sequence[ImageItem], phrases: Sequence[str]) -> list[Answer]:
        import torch

        inputs = self.encode([im.convert("RGB") for im in images], [self.query(p) for p in phrases]).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        found = self.detections(outputs, inputs)
        o = self.options
        answers = []
        for image, got in zip(images, found):
            # float64, so the clipped corners are the image's own edges, as Python floats give them
            scores, boxes = got["scores"].float().cpu(), got["boxes"].double().cpu()
            if len(scores) == 0:
                answers.append(Answer(None, raw="no box", problem="no_box"))
                continue
            form, (right, bottom) = self.frame(*image.size)
            # clipped to the image, as detectors' own post-processing does
            clipped = torch.stack([boxes[:, 0].clamp(0, right), boxes[:, 1].clamp(0, bottom),
                                   boxes[:, 2].clamp(0, right), boxes[:, 3].clamp(0, bottom)], 1)
            best = int(scores.argmax())
            if o.choice == "largest" and bool((scores > o.threshold).any()):  # type: ignore[attr-defined]
                area = (clipped[:, 2] - clipped[:, 0]).clamp(min=0) * (clipped[:, 3] - clipped[:, 1]).clamp(min=0)
                area = torch.where(scores > o.threshold, area, -1.0)  # type: ignore[attr-defined]
                # of equal areas (boxes clipped to the whole image), the highest-scoring
                best = int(torch.where(area == area.max(), scores, -1.0).argmax())
            score = float(scores[best])
            raw = f"score {score:.4f} box [" + ", ".join(f"{float(v):.4f}" for v in boxes[best]) + "]"  # as the model gave it
            if score <= o.threshold:  # type: ignore[attr-defined]
                answers.append(Answer(None, raw=raw, problem="below_threshold"))
                continue
            box = form.decode([float(v) for v in clipped[best]], *image.size)
            answers.append(Answer(None, raw=raw, problem=box) if isinstance(box, str) else Answer(box, raw=raw))
        return answers

    def describe(self) -> dict[str, Any]:
        declared = self.frame(1, 1)[0].declared()
        if self.input_frame is not None:
            declared["input_size"] = self.input_frame
        return {**super().describe(), "threshold": self.options.threshold,  # type: ignore[attr-defined]
                "choice": self.options.choice, "choice_rule": self.CHOICES[self.options.choice],  # type: ignore[attr-defined]
                "box_format": declared, "query": self.query("{phrase}")}


class GroundingDino(DetectorGrounder):
    """Grounding DINO or MM-Grounding-DINO: the phrase, lower-cased and ending in ".", as the query; one box answers (choice)."""

    plugin = "grounding_dino"
    model_types = ("grounding-dino", "mm-grounding-dino")

    def query(self, phrase: str) -> str:
        text = phrase.strip().lower()
        return text if text.endswith(".") else text + "."

    def batch_key(self, image: Image.Image | None, item: ImageItem, phrase: str) -> Hashable:
        return None if image is None else image.size

    def encode(self, images: Sequence[Image.Image], queries: Sequence[str]) -> Any:
        return self.processor(images=list(images), text=list(queries), padding=True, return_tensors="pt")

    def detections(self, outputs: Any, inputs: Any) -> list[dict[str, Any]]:
        # text_threshold only picks each box's label tokens, never which box answers
        return self.processor.post_process_grounded_object_detection(outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0)


class Owlv2(DetectorGrounder):
    """OWLv2: the phrase as its image's one text query; one box answers (choice)."""

    plugin = "owlv2"
    model_types = ("owlv2",)
    input_frame = "[max(width, height), max(width, height)]"

    def encode(self, images: Sequence[Image.Image], queries: Sequence[str]) -> Any:
        return self.processor(images=list(images), text=[[q] for q in queries], truncation=True, return_tensors="pt")

    def detections(self, outputs: Any, inputs: Any) -> list[dict[str, Any]]:
        return self.processor.post_process_grounded_object_detection(outputs, threshold=0.0)

    def frame(self, width: int, height: int) -> tuple[BoxFormat, tuple[float, float]]:
        side = max(width, height)
        form = BoxFormat(box_format="xyxy", scale="normalised", relative_to="letterboxed", letterbox="top_left",
                         input_size=(side, side))
        return form, (width / side, height / side)
