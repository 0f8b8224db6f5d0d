"""SynthRef: a deterministic synthetic referring-expression data set in RefCOCO's on-disk format.

Scenes are a few flat-coloured shapes on a textured grey background. Each scene holds one or
two groups of look-alike objects (same colour and shape), so naming an object often takes
more than its colour and shape. Every phrase has one of four types, recorded per sentence
under ``phrase_type``:

* ``attribute``   -- the target's colour+shape is unique: "the red circle";
* ``location``    -- it is the only one of its kind in its half of the image: "left red circle";
* ``superlative`` -- its size class beats every look-alike: "the biggest red circle";
* ``relation``    -- it alone is near a unique other object: "red circle next to the blue square".

``synthref`` uses all four; ``synthref+`` (the RefCOCO+ analogue) only attribute and
superlative phrases. Both share the images, annotations and detections::

    <root>/images/synthref_<image_id:012d>.jpg
    <root>/synthref/instances.json, <root>/synthref/refs(unc).p
    <root>/synthref+/instances.json, <root>/synthref+/refs(unc).p
    <root>/dets/synthref_unc_dets.json, <root>/dets/synthref+_unc_dets.json   (MAttNet format)
    <root>/SYNTHREF.json                                                      (spec + summary)

Every image is drawn from ``np.random.default_rng([seed, split_index, image_index])``, so a
split's images do not depend on the other splits' sizes and equal specs give equal bytes.
Spatial facts are deliberately coarse (halves, "near" vs "far") so tiny models at 64x64
input can learn them.

Modules: ``spec`` (vocabulary, :class:`SynthSpec`, :class:`SynthSummary`), ``scene``
(composition and layout), ``objects`` (geometry, placement, annotation, drawing),
``phrases`` (phrase rules, sentences, refs), ``detections`` (the simulated detector) and
``writer`` (:func:`generate`, which writes the files).
"""

from __future__ import annotations

from .phrases import phrase_options
from .spec import COLOURS, PHRASE_TYPES, SHAPES, SIZES, SPLITS, VARIANTS, SynthSpec, SynthSummary
from .writer import generate

__all__ = ["COLOURS", "PHRASE_TYPES", "SHAPES", "SIZES", "SPLITS", "VARIANTS", "SynthSpec", "SynthSummary",
           "generate", "phrase_options"]
