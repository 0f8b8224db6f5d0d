"""Pictures for ``refbench show``, drawn with Pillow: images with boxes, candidate thumbnails,
the per-type accuracy chart and the PNG grid.

Pillow is already a dependency and draws everything here (boxes, bars, interval whiskers,
text), so looking at predictions adds no plotting library to the install or to the CLI's start.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

TRUTH = (0, 229, 255)  # cyan
CHOSEN = (255, 20, 147)  # deep pink
INK, MUTED, PAPER, RULE = (20, 20, 20), (95, 95, 95), (255, 255, 255), (215, 215, 215)
HIT, MISS = (20, 130, 60), (190, 30, 30)
SIDE, THUMB = 256, 96  # display sizes in pixels: the image, each candidate


def font(size: int = 13) -> Any:
    """Pillow's bundled font at ``size`` (its bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def fit(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """``image`` scaled so its longer side is ``side`` pixels, and the scale used."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS), scale


def outline(draw: ImageDraw.ImageDraw, xywh: Sequence[float], scale: float, colour: tuple[int, int, int], width: int) -> None:
    x, y, w, h = (v * scale for v in xywh)
    draw.rectangle([x, y, x + max(w, 1), y + max(h, 1)], outline=colour, width=width)


def annotated(image: Image.Image, truth: Sequence[float], chosen: Sequence[float] | None, side: int = SIDE) -> Image.Image:
    """The image at display size with the truth box (cyan, thick) and the chosen box (pink) drawn."""
    out, scale = fit(image, side)
    draw = ImageDraw.Draw(out)
    outline(draw, truth, scale, TRUTH, 4)
    if chosen:
        outline(draw, chosen, scale, CHOSEN, 2)
    return out


def candidate(image: Image.Image, box: Sequence[float], side: int = THUMB) -> Image.Image:
    """One candidate drawn on the image: what a method that does not look at views is shown."""
    out, scale = fit(image, side)
    outline(ImageDraw.Draw(out), box, scale, CHOSEN, 2)
    return out


def thumb(view: Image.Image, side: int = THUMB) -> Image.Image:
    return fit(view.convert("RGB"), side)[0]


def framed(image: Image.Image, colour: tuple[int, int, int] | None, width: int = 3) -> Image.Image:
    """``image`` inside a border (the candidate the journal chose), or a white one of the same width."""
    out = Image.new("RGB", (image.width + 2 * width, image.height + 2 * width), colour or PAPER)
    out.paste(image, (width, width))
    return out


def data_uri(image: Image.Image, fmt: str = "PNG") -> str:
    """``image`` as a data URI, so the HTML page carries its pictures inline."""
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {"optimize": True}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def chart(rows: Sequence[tuple[str, int, float, list[float] | None]], title: str, width: int = 560) -> Image.Image:
    """Horizontal bars of accuracy (%) per label ``(label, n, accuracy, ci95 or None)``, each with its
    95% interval as a whisker when known; the axis runs 0-100."""
    f, small = font(13), font(11)
    left, right, bar, gap, top = 150, 70, 18, 12, 34
    height = top + len(rows) * (bar + gap) + 28
    out = Image.new("RGB", (width, height), PAPER)
    d = ImageDraw.Draw(out)
    d.text((8, 8), title, fill=INK, font=f)
    out.info["title"] = title  # the page's alt text
    span = width - left - right

    def x(v: float) -> float:
        return left + span * max(0.0, min(100.0, v)) / 100

    axis = top + len(rows) * (bar + gap)
    for tick in range(0, 101, 25):
        d.line([x(tick), top - 4, x(tick), axis], fill=RULE)
        d.text((x(tick), axis + 4), str(tick), fill=MUTED, font=small, anchor="ma")
    for i, (label, n, acc, ci) in enumerate(rows):
        y = top + i * (bar + gap)
        d.text((left - 8, y + bar / 2), f"{label} (n={n})", fill=INK, font=f, anchor="rm")
        d.rectangle([x(0), y, x(acc), y + bar], fill=(70, 110, 180))
        if ci:
            lo, hi, mid = x(ci[0]), x(ci[1]), y + bar / 2
            d.line([lo, mid, hi, mid], fill=INK, width=2)
            d.line([lo, y + 3, lo, y + bar - 3], fill=INK, width=2)
            d.line([hi, y + 3, hi, y + bar - 3], fill=INK, width=2)
        d.text((x(100) + 6, y + bar / 2), f"{acc:.1f}", fill=INK, font=f, anchor="lm")
    return out


def tile(card: Any, k: int) -> Image.Image:
    """One phrase as a PNG tile: the phrase, the annotated image, its top-k candidates with
    probabilities, and what re-scoring found (``card``: a :class:`refbench.show.Card`)."""
    r = card.record
    f, small = font(13), font(11)
    width = SIDE + 16
    cell = (width - 8) // max(k, 1)
    phrase = textwrap.wrap(f"\u201c{r['text']}\u201d", 34)
    lines = [(f"{r['phrase_type'] or 'untyped'} · {'hit' if r['hit'] else 'miss'} · IoU {r['iou']:.2f}", HIT if r["hit"] else MISS),
             (f"sent {r['sent_id']} · image {r['image_id']} · {r['split']}", MUTED), status(card)]
    top = 8 + 17 * len(phrase) + 4
    height = top + SIDE + 8 + (cell + 24 if card.thumbs else 0) + 17 * len(lines) + 8
    out = Image.new("RGB", (width, height), PAPER)
    d = ImageDraw.Draw(out)
    d.rectangle([0, 0, width - 1, height - 1], outline=HIT if r["hit"] else MISS, width=2)
    for i, text in enumerate(phrase):
        d.text((8, 8 + 17 * i), text, fill=INK, font=f)
    out.paste(card.image, (8 + (SIDE - card.image.width) // 2, top))
    y = top + SIDE + 8
    if card.thumbs:
        for j, (view, caption, chosen) in enumerate(card.thumbs):
            small_view = framed(fit(view, cell - 10)[0], CHOSEN if chosen else None, 2)
            out.paste(small_view, (4 + j * cell + (cell - small_view.width) // 2, y))
            d.multiline_text((4 + j * cell + cell / 2, y + small_view.height + 3), caption, fill=INK, font=small, anchor="ma",
                             align="center", spacing=2)
        y += cell + 24
    for text, colour in lines:
        d.text((8, y), text, fill=colour, font=small)
        y += 17
    return out


def grid(header: Sequence[str], chart_image: Image.Image | None, tiles: Sequence[Image.Image], columns: int = 4) -> Image.Image:
    """Header lines, the chart, then the tiles in rows of ``columns``."""
    f = font(14)
    columns = max(1, min(columns, len(tiles)))
    cw = max(t.width for t in tiles) if tiles else SIDE
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    heights = [max(t.height for t in r) for r in rows]
    width = max(columns * (cw + 8) + 8, (chart_image.width + 16) if chart_image else 0)
    legend = 10 + 20 * len(header)
    head = legend + 24 + (chart_image.height + 10 if chart_image else 0)
    out = Image.new("RGB", (width, head + sum(h + 8 for h in heights) + 8), PAPER)
    d = ImageDraw.Draw(out)
    for i, line in enumerate(header):
        d.text((8, 10 + 20 * i), line, fill=INK if i == 0 else MUTED, font=f)
    x = 8
    for colour, label in ((TRUTH, "truth"), (CHOSEN, "chosen by the method; its candidate framed below")):
        d.rectangle([x, legend + 3, x + 16, legend + 15], outline=colour, width=3)
        d.text((x + 22, legend), label, fill=INK, font=f)
        x += 22 + d.textlength(label, font=f) + 18
    if chart_image:
        out.paste(chart_image, (8, legend + 24))
    y = head
    for r, h in zip(rows, heights):
        for j, t in enumerate(r):
            out.paste(t, (8 + j * (cw + 8), y))
        y += h + 8
    return out


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def status(c: Any) -> tuple[str, tuple[int, int, int]]:
    """What re-scoring found for a card, and its colour (a differing choice in red)."""
    r = c.record
    if c.agrees is None:
        return c.note, MUTED
    if c.agrees:
        return f"re-scored choice #{c.choice} = journal's", MUTED
    return f"re-scored choice #{c.choice} differs from the journal's #{r['chosen']}", MISS


STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#141414;background:#f6f6f6}
header{margin-bottom:16px}h1{font-size:18px;margin:0 0 6px}.meta{color:#555;margin:2px 0}
.legend span{display:inline-block;width:14px;height:10px;margin:0 4px 0 10px;border:3px solid}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.card{background:#fff;border:2px solid #ccc;border-radius:6px;padding:10px}.card.hit{border-color:#148c3c}
.card.miss{border-color:#be1e1e}.phrase{font-weight:600;font-size:15px}.tag{display:inline-block;padding:0 6px;
border-radius:4px;background:#e8e8e8;margin-right:4px;font-size:12px}.views{display:flex;gap:6px;margin:6px 0}
.views figure{margin:0;text-align:center;font-size:11px;flex:1 1 0;min-width:0}
.views img{border:3px solid #fff;width:100%;max-width:120px;height:auto;box-sizing:border-box}.views img.chosen{border-color:#ff1493}
.bad{color:#be1e1e;font-weight:600}.muted{color:#666;font-size:12px}img.main{display:block;margin:6px auto}"""


def page(header: Sequence[str], chart_image: Image.Image | None, rows: Sequence[Any], cards: Sequence[Any]) -> str:
    """The self-contained HTML page: every picture inline as a data URI."""
    e = html.escape
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>", f"<title>{e(header[0])}</title><style>{STYLE}</style></head><body>",
             f"<header><h1>{e(header[0])}</h1>", *[f"<p class=meta>{e(h)}</p>" for h in header[1:]],
             f"<p class=legend>boxes:<span style='border-color:rgb{TRUTH}'></span>truth"
             f"<span style='border-color:rgb{CHOSEN}'></span>chosen by the method (and its view below)</p>"]
    if chart_image is not None:
        title = e(chart_image.info.get("title", ""))
        parts.append(f"<img class=chart src='{data_uri(chart_image)}' alt='{title}' width={chart_image.width}>")
    else:
        parts.append("<p class=muted>no per-type chart: this run's phrases carry no type</p>")
    parts.append("</header><main class=cards>")
    for c in cards:
        r = c.record
        found, colour = status(c)
        parts += [f"<article class='card {'hit' if r['hit'] else 'miss'}' data-sent-id={r['sent_id']}>",
                  f"<div class=phrase>\u201c{e(r['text'])}\u201d</div>",
                  f"<div><span class=tag>{e(r['phrase_type'] or 'untyped')}</span><span class=tag>{'hit' if r['hit'] else 'miss'}</span>"
                  f"<span class=tag>IoU {r['iou']:.2f}</span><span class=muted>sent {r['sent_id']} · image {r['image_id']} · {e(r['split'])}</span></div>",
                  f"<img class=main src='{data_uri(c.image, 'JPEG')}' alt='image {r['image_id']}' width={c.image.width}>"]
        if c.thumbs:
            parts.append("<div class=views>" + "".join(
                f"<figure><img class='view{' chosen' if chosen else ''}' src='{data_uri(v, 'JPEG')}' alt='{e(cap)}'>"
                f"<figcaption>{e(cap).replace(chr(10), '<br>')}</figcaption></figure>" for v, cap, chosen in c.thumbs) + "</div>")
            parts.append(f"<div class=muted>{e(c.note)}; softmax over {len(c.probs)} candidates</div>")
        parts.append(f"<div class='{'bad' if colour == MISS else 'muted'} agree'>{e(found)}</div></article>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)
