"""The ``endpoint`` grounder: a VLM served behind an OpenAI-compatible API (vLLM, SGLang, TGI).

Each (image, phrase) pair is one ``POST {base_url}/v1/chat/completions`` request in the OpenAI chat
format: the image inline as a base64 PNG data URL in an ``image_url`` content part, then the prompt
(``prompt`` with the phrase in place of ``{phrase}``) as a text part, greedy decoding (``temperature``
0). At most ``concurrency`` requests are in flight; answers come back in input order, and each
request is the same whatever the concurrency, so runs at any concurrency agree.

The answer's box is read by a parser (``pattern``, or the generic one: a JSON ``"bbox_2d": [...]``,
Qwen2-VL's ``(x1,y1),(x2,y2)``, or the first ``[x1, y1, x2, y2]``) and mapped to original-image
pixels through the declared :class:`refbench.BoxFormat`, never guessed. Connection errors, time-outs,
429 and 5xx answers are retried with exponential backoff (``Retry-After`` honoured). After the
retries, ``on_error: stop`` stops the run with one line (the journal keeps every answer written;
rerunning the same command resumes), ``on_error: miss`` scores the phrase as a miss with problem
``endpoint_error`` and the error as its raw text. 401, 403 and 404 always stop: they mean a wrong
URL, model name or key, not a phrase the server cannot answer.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator, model_validator

from refbench import Answer, BoxFormat, Grounder, ImageItem, RefbenchError

from .answers import data_url, parse_box

RETRIED = frozenset({408, 425, 429})  # and every 5xx
FATAL = frozenset({401, 403, 404})  # a wrong key, URL or model name: every request would fail alike
MAX_WAIT_S = 30.0  # the longest pause between two tries (backoff or Retry-After)


class Failure(Exception):
    """A request that failed after its retries; ``status`` is the HTTP status, if one came back."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def fatal(self) -> bool:
        """A status no retry and no other phrase can mend (a wrong key, URL or model name)."""
        return self.status in FATAL


class Stopped(Failure):
    """A request given up because another one stopped the run."""


class EndpointGrounder(Grounder):
    """A VLM behind an OpenAI-compatible endpoint (vLLM, SGLang, TGI): one chat request per phrase."""

    class Options(BoxFormat):
        base_url: str = Field(description="the server's root, e.g. http://127.0.0.1:8000 (a trailing /v1 is dropped)")
        model: str | None = Field(None, description="the model name sent with each request (default: the one the server lists)")
        api_key_env: str | None = Field(None, description="the environment variable holding the API key, sent as a Bearer token")
        api_key: str | None = Field(None, description="refused: the config is recorded in run.json; use api_key_env")
        prompt: str = Field(description="the text sent after the image; {phrase} stands for the phrase")
        system: str | None = Field(None, description="a system message sent first, if any")
        pattern: str | None = Field(None, description="regex with 4 groups, the coordinates (default: the generic parser)")
        max_tokens: int = Field(128, ge=1, description="the most tokens an answer may take")
        temperature: float = Field(0.0, ge=0.0, description="sampling temperature; 0: greedy, so answers repeat")
        extra_body: dict[str, Any] = Field(default_factory=dict, description="more request fields, e.g. vLLM's mm_processor_kwargs")
        concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once (per scoring process)")
        retries: int = Field(4, ge=0, description="tries after the first, on connection errors, time-outs, 429 and 5xx")
        backoff: float = Field(1.0, ge=0.0, description="seconds before the first retry, doubled at each retry (at most 30)")
        timeout: float = Field(120.0, gt=0.0, description="seconds a request may take")
        on_error: Literal["stop", "miss"] = Field("stop", description="after the retries: stop the run (resumable), or score a miss")

        @field_validator("base_url")
        @classmethod
        def _url(cls, v: str) -> str:
            if not re.match(r"^https?://[^/\s]+", v):
                raise ValueError(f"base_url {v!r} is not an http(s) URL, e.g. http://127.0.0.1:8000")
            return re.sub(r"/v1/?$", "", v.rstrip("/"))

        @model_validator(mode="after")
        def _consistent(self) -> "EndpointGrounder.Options":
            if (self.relative_to == "original") != (self.input_size is None):
                raise ValueError("input_size is needed exactly when relative_to is resized or letterboxed")
            if "{phrase}" not in self.prompt:
                raise ValueError("prompt has no {phrase}: write where the phrase goes")
            if self.pattern is not None:
                try:
                    groups = re.compile(self.pattern).groups
                except re.error as exc:
                    raise ValueError(f"pattern is not a regex: {exc}") from None
                if groups != 4:
                    raise ValueError(f"pattern has {groups} groups; it needs 4, the coordinates")
            return self

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, cls.Options)
        problems = []
        if options.api_key is not None:
            problems.append(RefbenchError("api_key is written in the config, which run.json records",
                                          "export the key in an environment variable and name it: api_key_env: VLLM_API_KEY"))
        if options.api_key_env is not None and not os.environ.get(options.api_key_env):
            problems.append(RefbenchError(f"environment variable {options.api_key_env} (api_key_env) is not set",
                                          f"export {options.api_key_env}=<the server's API key>"))
        return problems

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        assert isinstance(o, self.Options)
        self.url = f"{o.base_url}/v1/chat/completions"
        self.pattern = re.compile(o.pattern) if o.pattern is not None else None
        self.headers = {"Authorization": f"Bearer {os.environ[o.api_key_env]}"} if o.api_key_env else {}
        self._pid: int | None = None  # the process the client and threads below belong to
        self.served = self._served()
        self.model = o.model or self._only_model()
        ids = [m.get("id") for m in self.served or []]
        if ids and self.model not in ids:
            raise RefbenchError(f"endpoint {o.base_url} serves {', '.join(map(str, ids))}, not {self.model}",
                                f"set model: {ids[0]} (or serve {self.model} there)")

    # -- the server ---------------------------------------------------------------------------

    def _served(self) -> list[dict[str, Any]] | None:
        """The models the server lists at GET /v1/models (id, root, owned_by, max_model_len where
        given; never ``created``, which changes at each restart), or None if it lists none."""
        import httpx

        url = f"{self.options.base_url}/v1/models"
        try:
            with httpx.Client(timeout=self.options.timeout, headers=self.headers) as client:  # closed before any fork
                response = self._request(client, "GET", url, None, threading.Event())
        except Failure as exc:
            if exc.status in (404, 405):
                return None  # a server without the listing still answers chat requests
            raise self._stopped(url, exc, start=True) from None
        try:
            data = response.json()["data"]
            return [{k: m[k] for k in ("id", "root", "owned_by", "max_model_len") if m.get(k) is not None} for m in data]
        except (ValueError, KeyError, TypeError):
            return None

    def _only_model(self) -> str:
        ids = [m.get("id") for m in self.served or [] if m.get("id")]
        if len(ids) != 1:
            listed = f"serves {', '.join(map(str, ids))}" if ids else "lists no model at /v1/models"
            raise RefbenchError(f"endpoint {self.options.base_url} {listed}", "name the model to ask: model: NAME")
        return str(ids[0])

    def _session(self) -> tuple[Any, ThreadPoolExecutor]:
        """This process's HTTP client and thread pool, made on first use (a fork gets its own)."""
        if self._pid != os.getpid():
            import httpx

            n = self.options.concurrency
            self._client = httpx.Client(timeout=self.options.timeout, headers=self.headers,
                                        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
            self._pool = ThreadPoolExecutor(n, thread_name_prefix="refbench-endpoint")
            self._pid = os.getpid()
        return self._client, self._pool

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_pool")} | {"_pid": None}

    def _request(self, client: Any, method: str, url: str, body: dict[str, Any] | None, stop: threading.Event) -> Any:
        """The 2xx response to one request, retried with backoff; a :class:`Failure` after the retries
        (or at once, for a status no retry mends). ``stop`` set by another request ends the waiting."""
        import httpx

        o, error = self.options, ""
        for attempt in range(o.retries + 1):
            if stop.is_set():
                raise Stopped("stopped: another request failed")
            wait, status = min(MAX_WAIT_S, o.backoff * 2 ** attempt), None
            try:
                response = client.request(method, url, json=body)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code < 400:
                    return response
                status, text = response.status_code, " ".join(response.text.split())[:300]
                error = f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"
                if response.status_code not in RETRIED and response.status_code < 500:
                    raise Failure(error, response.status_code)
                after = response.headers.get("retry-after", "")
                wait = min(MAX_WAIT_S, float(after)) if re.fullmatch(r"\d+(\.\d+)?", after) else wait
            if attempt < o.retries and stop.wait(wait):
                raise Stopped("stopped: another request failed")
        tries = o.retries + 1
        raise Failure(f"{error} (after {tries} tr{'ies' if tries > 1 else 'y'})", status)

    def _stopped(self, url: str, exc: Failure, start: bool = False) -> RefbenchError:
        """The one line a run stops with: the endpoint, the error, and how to go on."""
        saved = "" if start else "the answers so far are saved; "
        if exc.fatal:
            fix = f"check base_url, model and the API key (api_key_env); {saved}then run the same command again"
        elif start:
            fix = "start the server (e.g. vllm serve MODEL) or correct base_url, then run the same command again"
        else:
            fix = (f"{saved}when the server answers again, run the same command to resume "
                   "(or set on_error: miss to score such phrases as misses)")
        return RefbenchError(f"endpoint {url} failed: {exc}", fix)

    # -- grounding -----------------------------------------------------------------------------

    def request_body(self, image_url: str, phrase: str) -> dict[str, Any]:
        """The chat request for one pair: the same bytes whatever the concurrency or batch."""
        o = self.options
        messages: list[dict[str, Any]] = [{"role": "system", "content": o.system}] if o.system is not None else []
        messages.append({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": o.prompt.replace("{phrase}", phrase)}]})
        return {**o.extra_body, "model": self.model, "messages": messages, "max_tokens": o.max_tokens,
                "temperature": o.temperature, "stream": False}

    def _ask(self, image_url: str, phrase: str, stop: threading.Event) -> str:
        response = self._request(self._session()[0], "POST", self.url, self.request_body(image_url, phrase), stop)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Failure(f"the answer has no choices[0].message.content: {response.text[:200]!r}") from None
        return content if isinstance(content, str) else "" if content is None else str(content)

    def _read(self, text: str, item: ImageItem) -> Answer:
        values = parse_box(text, self.pattern)
        if values is None:
            return Answer(None, text, "unparsable")
        decoded = self.options.decode(values, item.width, item.height)
        return Answer(None, text, decoded) if isinstance(decoded, str) else Answer(decoded, text)

    def ground(self, image: Any, item: ImageItem) -> list[Answer]:
        return self.ground_batch([image], [item])[0]

    def ground_batch(self, images: Sequence[Any], items: Sequence[ImageItem]) -> list[list[Answer]]:
        urls = {i: data_url(image) for i, (image, item) in enumerate(zip(images, items)) if item.refs}
        pairs = [(i, ref.text) for i, item in enumerate(items) for ref in item.refs]
        _, pool = self._session()
        stop = threading.Event()

        def ask(i: int, phrase: str) -> str:
            try:
                return self._ask(urls[i], phrase, stop)
            except Failure as exc:
                if exc.fatal or self.options.on_error == "stop":
                    stop.set()  # the others stop retrying at once
                raise

        futures: list[Future[str]] = [pool.submit(ask, i, phrase) for i, phrase in pairs]
        answers: list[Answer] = []
        try:
            for (i, _), future in zip(pairs, futures):
                try:
                    text = future.result()
                except Failure as exc:
                    if exc.fatal or isinstance(exc, Stopped) or self.options.on_error == "stop":
                        stop.set()
                        raise self._stopped(self.url, first_failure(futures)) from None
                    answers.append(Answer(None, str(exc), "endpoint_error"))
                    continue
                answers.append(self._read(text, items[i]))
        except BaseException:  # a stop or Ctrl-C: the queued requests are dropped, not sent
            stop.set()
            for f in futures:
                f.cancel()
            raise
        out, k = [], 0
        for item in items:
            out.append(answers[k:k + len(item.refs)])
            k += len(item.refs)
        return out

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"base_url": o.base_url, "model": self.model, "served": self.served, "prompt": o.prompt, "system": o.system,
                "max_tokens": o.max_tokens, "temperature": o.temperature, "extra_body": o.extra_body,
                "parser": o.pattern or "generic: bbox_2d, (x1,y1),(x2,y2), [x1, y1, x2, y2]",
                "declared": o.declared(), "on_error": o.on_error, "api_key_env": o.api_key_env}


def first_failure(futures: Sequence[Future[str]]) -> Failure:
    """The first failure among ``futures`` that is not a request stopped by another (the rest are
    cancelled and waited for, so no request runs on after the run stops)."""
    for f in futures:
        f.cancel()
    wait(futures)
    failures = [e for f in futures if not f.cancelled() and isinstance(e := f.exception(), Failure)]
    return next((e for e in failures if not isinstance(e, Stopped)), failures[0])
