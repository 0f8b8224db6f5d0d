"""The shape every model grounder of this plugin shares: (image, phrase) pairs answered in batches.

The runner hands :meth:`~refbench.Grounder.ground_batch` the images it has ready; here their
phrases are laid out in order, grouped by :meth:`ModelGrounder.batch_key` and cut into batches of
``batch_size`` pairs (across images, and across an image's phrases), each answered by one call of
:meth:`ModelGrounder.answer`. An answer
must not depend on which pairs share its batch, so batched and unbatched runs agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Hashable, Sequence

from PIL import Image

from refbench import Answer, Grounder, ImageItem, RefbenchError

from .hub import ModelOptions, check_family, device_and_dtype, fingerprint, resolve


class ModelGrounder(Grounder, ABC):
    """A grounder backed by a transformers model (or any model answering batches of pairs).

    Subclasses set :attr:`model_types` (the config ``model_type`` values of their family) and
    implement :meth:`build` (load the model from a resolved folder) and :meth:`answer`.
    """

    #: config.json ``model_type`` values this grounder runs; others are refused before loading.
    model_types: tuple[str, ...] = ()
    #: the plugin name, for messages
    plugin: str = ""

    Options = ModelOptions

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, ModelOptions)
        try:
            folder = resolve(options.model, options.revision)
            if cls.model_types:
                check_family(folder, options.model, cls.model_types, cls.plugin)
            device_and_dtype(options.device, options.precision)
        except RefbenchError as exc:
            return [exc]
        return []

    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        o = self.options
        assert isinstance(o, ModelOptions)
        self.folder = resolve(o.model, o.revision)
        if self.model_types:
            check_family(self.folder, o.model, self.model_types, self.plugin)
        self.device, self.dtype = device_and_dtype(o.device, o.precision)
        self.build()

    @abstractmethod
    def build(self) -> None:
        """Load the model and its processor from :attr:`folder` onto :attr:`device` in :attr:`dtype`."""

    @abstractmethod
    def answer(self, images: Sequence[Image.Image], items: Sequence[ImageItem], phrases: Sequence[str]) -> list[Answer]:
        """One answer per pair ``(images[i], phrases[i])`` (``items[i]`` is the image's item, for its
        size); at most ``batch_size`` pairs, answered in one batch."""

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def ground(self, image: Image.Image | None, item: ImageItem) -> list[Answer]:
        return self.ground_batch([image], [item])[0]

    def batch_key(self, image: Image.Image | None, item: ImageItem, phrase: str) -> Hashable:
        """Pairs share a batch only when their keys are equal. None (the default): any pairs may; a
        detector whose processor pads a batch to its largest image keys by the image's size, and a
        model whose padding moves its positions by the prompt's length in tokens, so padding never
        changes an answer."""
        return None

    def ground_batch(self, images: Sequence[Image.Image | None], items: Sequence[ImageItem]) -> list[list[Answer]]:
        pairs = [(i, r.text) for i, item in enumerate(items) for r in item.refs]
        groups: dict[Hashable, list[int]] = {}  # pair indices by batch key, in order
        for k, (i, _) in enumerate(pairs):
            groups.setdefault(self.batch_key(images[i], items[i], pairs[k][1]), []).append(k)
        size = self.options.batch_size
        answers: list[Answer | None] = [None] * len(pairs)
        for members in groups.values():
            for start in range(0, len(members), size):
                batch = [pairs[k] for k in members[start:start + size]]
                got = self.answer([images[i] for i, _ in batch], [items[i] for i, _ in batch], [t for _, t in batch])
                if len(got) != len(batch):
                    raise RefbenchError(f"{type(self).__name__} answered {len(got)} of {len(batch)} phrases",
                                        "answer() returns one Answer per pair")
                for k, a in zip(members[start:start + size], got):
                    answers[k] = a
        done = [a for a in answers if a is not None]
        out, k = [], 0
        for item in items:
            out.append(done[k:k + len(item.refs)])
            k += len(item.refs)
        return out

    def describe(self) -> dict[str, Any]:
        o = self.options
        assert isinstance(o, ModelOptions)
        return {"model": o.model, "revision": o.revision, **fingerprint(self.folder), "device": str(self.device),
                "precision": str(self.dtype).removeprefix("torch."), "batch_size": o.batch_size,
                "attn_implementation": o.attn_implementation}
