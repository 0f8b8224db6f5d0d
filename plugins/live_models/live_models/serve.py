"""A small OpenAI-compatible server: ``/v1/models`` and ``/v1/chat/completions`` (FastAPI, uvicorn).

It decodes the base64 image of each chat request and answers it, as vLLM, SGLang or TGI would: with
a model folder (``--model DIR``: any transformers image-text-to-text model, run greedily through its
own chat template), or with ``colours``, a deterministic answerer that boxes the largest region of the
colour the phrase names (the default), written as Qwen2-VL does (``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, 0-1000
grid). Switches simulate a failing server: the first N requests answered with a status or slowly,
phrases that always fail or get text without a box, and a server that stops after N answers::

    python -m live_models.serve --port 8000
    python -m live_models.serve --port 8000 --model ./tiny-qwen2-vl --served-name tiny

``GET /stats`` counts the requests seen and the faults served. Needs the plugin's ``test`` extra.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

Answerer = Callable[[Image.Image, str], str]

# Colour names and the RGB that SynthRef draws them in (refbench/synth/spec.py), plus a few more.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "blue": (40, 90, 225), "yellow": (240, 210, 40), "purple": (150, 55, 195),
    "white": (245, 245, 245), "black": (15, 15, 15), "orange": (240, 140, 30), "green": (40, 180, 60)}
COLOUR_DISTANCE = 60.0  # RGB distance within which a pixel counts as the named colour (JPEG drift is ~10)
NO_BOX = "I cannot find it in the image."


def colour_answer(image: Image.Image, text: str) -> str:
    """The box of the largest connected region of the first colour named in ``text``, on Qwen2-VL's
    0-1000 grid as ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (pixel edges, rounded); text without
    a box when no colour is named or none of it is in the image."""
    from scipy import ndimage

    words = re.findall(r"[a-z]+", text.lower())
    colour = next((w for w in words if w in COLOURS), None)
    if colour is None:
        return NO_BOX
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    mask = np.linalg.norm(pixels - np.array(COLOURS[colour], np.float32), axis=-1) < COLOUR_DISTANCE
    labels, n = ndimage.label(mask)
    if n == 0:
        return NO_BOX
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    ys, xs = np.nonzero(labels == largest)
    h, w = mask.shape
    x1, y1, x2, y2 = (round(v * 1000) for v in (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h))
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


def model_answerer(folder: str, max_new_tokens_cap: int = 256) -> Callable[[Image.Image, str, int], str]:
    """A transformers image-text-to-text model from ``folder`` answering greedily through its own
    processor and chat template (on the CPU)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .hub import quiet_progress

    with quiet_progress():
        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    end = processor.tokenizer.eos_token_id
    lock = threading.Lock()  # one generation at a time: the model is not shared across threads

    def answer(image: Image.Image, text: str, max_tokens: int) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[image], text=[prompt], return_tensors="pt")
        with lock, torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=min(max_tokens, max_new_tokens_cap), do_sample=False)
        tokens = out[0, inputs["input_ids"].shape[1]:].tolist()
        # the answer ends before the end-of-text token, as vLLM's does; other special tokens (a box's) stay
        tokens = tokens[: tokens.index(end)] if end in tokens else tokens
        return processor.tokenizer.decode(tokens, skip_special_tokens=False)

    return answer


@dataclass
class Faults:
    """Failures the server simulates, for retry and resume tests."""

    fail_first: int = 0  # the first N chat requests get `fail_with`
    fail_with: str = "500"  # an HTTP status, or "slow": answered after `delay` seconds
    delay: float = 0.0
    fail_phrases: tuple[str, ...] = ()  # requests whose text holds one of these always get HTTP 500
    malformed: tuple[str, ...] = ()  # requests whose text holds one of these get an answer without a box
    exit_after: int | None = None  # the server stops (refusing connections) after this many answers
    seen: int = 0
    answered: int = 0
    served_faults: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(model_id: str, answer: Callable[[Image.Image, str, int], str], faults: Faults | None = None,
               api_key: str | None = None) -> Any:
    """The FastAPI app serving ``answer(image, text, max_tokens)`` as ``model_id``; with ``api_key``,
    requests to /v1 without ``Authorization: Bearer <api_key>`` get 401, as vLLM's ``--api-key``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    faults = faults or Faults()
    app = FastAPI(title="refbench test server")
    app.state.server = None  # the uvicorn server, for exit_after

    @app.middleware("http")
    async def authorise(request: Request, call_next: Any) -> Any:
        if api_key is not None and request.url.path.startswith("/v1") and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": "Unauthorized"}, 401)
        return await call_next(request)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "error", "code": status}}, status, headers=headers)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "refbench", "root": model_id}]}

    @app.get("/stats")
    def stats() -> dict[str, int]:
        return {"seen": faults.seen, "answered": faults.answered, "faults": faults.served_faults}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> Any:
        with faults.lock:
            faults.seen += 1
            nth = faults.seen
        if body.get("model") != model_id:
            return error(404, f"The model `{body.get('model')}` does not exist.")
        try:
            image, text = _image_and_text(body["messages"])
        except (KeyError, TypeError, ValueError, OSError) as exc:
            return error(400, f"bad request: {exc}")
        if nth <= faults.fail_first:
            with faults.lock:
                faults.served_faults += 1
            if faults.fail_with == "slow":
                time.sleep(faults.delay)
            else:
                status = int(faults.fail_with)
                return error(status, "simulated failure", {"Retry-After": "0"} if status == 429 else None)
        if any(p in text for p in faults.fail_phrases):
            with faults.lock:
                faults.served_faults += 1
            return error(500, "simulated failure for this phrase")
        content = NO_BOX if any(p in text for p in faults.malformed) else answer(image, text, int(body.get("max_tokens") or 128))
        with faults.lock:
            faults.answered += 1
            if faults.exit_after is not None and faults.answered >= faults.exit_after and app.state.server is not None:
                app.state.server.should_exit = True  # stops listening: later connections are refused
        return {"id": f"chatcmpl-{nth}", "object": "chat.completion", "created": int(time.time()), "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    return app


def _image_and_text(messages: list[dict[str, Any]]) -> tuple[Image.Image, str]:
    """The image (a base64 data URL) and the text of the last user message."""
    parts = next(m for m in reversed(messages) if m["role"] == "user")["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    header, _, data = url.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ValueError("image_url is not a base64 data URL")
    image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    image.load()
    text = " ".join(p["text"] for p in parts if p["type"] == "text")
    return image.convert("RGB"), text


def main(argv: list[str] | None = None) -> None:
    """``python -m live_models.serve``: serve until interrupted (or until --exit-after answers)."""
    import uvicorn

    ap = argparse.ArgumentParser(prog="python -m live_models.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", help="a transformers image-text-to-text model folder to serve (default: the colours answerer)")
    ap.add_argument("--served-name", help="the model id the server lists (default: the answerer's name)")
    ap.add_argument("--api-key", help="require this key as a Bearer token (as vLLM's --api-key)")
    ap.add_argument("--fail-first", type=int, default=0, help="the first N chat requests fail (see --fail-with)")
    ap.add_argument("--fail-with", default="500", help="an HTTP status (500, 503, 429...) or 'slow'")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds a 'slow' request waits")
    ap.add_argument("--fail-phrase", action="append", default=[], help="requests whose text holds this always get HTTP 500")
    ap.add_argument("--malformed", action="append", default=[], help="requests whose text holds this get an answer without a box")
    ap.add_argument("--exit-after", type=int, help="stop after this many answers (then connections are refused)")
    args = ap.parse_args(argv)
    if args.model:
        answer, name = model_answerer(args.model), args.served_name or args.model
    else:
        answer, name = (lambda image, text, max_tokens: colour_answer(image, text)), args.served_name or "colours"
    faults = Faults(args.fail_first, args.fail_with, args.delay, tuple(args.fail_phrase), tuple(args.malformed), args.exit_after)
    app = create_app(name, answer, faults, args.api_key)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    app.state.server = server
    server.run()


if __name__ == "__main__":
    main()
