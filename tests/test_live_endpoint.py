"""The endpoint grounder against a real OpenAI-compatible server on 127.0.0.1 (live_models.serve run
by uvicorn in a subprocess): end-to-end runs, concurrency, retries, refused connections and resume,
misses, answers without a box, and bad options."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from refbench import BoxFormat
from refbench.cli import main

from conftest import bench_yaml

from live_models.endpoint import parse_box
from live_models.serve import NO_BOX, colour_answer

PROMPT = "<|object_ref_start|>{phrase}<|object_ref_end|>"  # Qwen2-VL's grounding query (see GROUNDERS.md)
FORMAT = BoxFormat(box_format="xyxy", scale="0-1000")  # what the colours answerer writes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m live_models.serve`` on 127.0.0.1, started and stopped by the test."""

    def __init__(self, *flags: str, port: int | None = None, start_s: float = 20) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the server's messages go to a file, which never fills up as a pipe would, and are shown if it fails to start
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "live_models.serve", "--port", str(self.port), *flags],
                                     stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + start_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.messages()}")
            try:
                if httpx.get(f"{self.url}/stats", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not start in {start_s:.0f} s: {self.messages()}")

    def messages(self) -> str:
        """The last of what the server wrote to stderr."""
        self.log.seek(0)
        return self.log.read()[-2000:]

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/stats").json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(*flags: str, port: int | None = None, start_s: float = 20) -> Server:
        started.append(Server(*flags, port=port, start_s=start_s))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def config(root: Path, url: str, runner: str = "", **options) -> str:
    spec = {"plugin": "endpoint", "base_url": f"{url}/v1", "prompt": PROMPT, "box_format": "xyxy", "scale": "0-1000",
            "backoff": 0.05, **options}
    return bench_yaml(root, f"  - id: vlm\n    ground: {json.dumps(spec)}", splits="[testA]", proposer="null",
                      extra=f"runner: {{{runner}}}" if runner else "")


def run(write_config, text: str, results: Path, name: str = "bench.yaml") -> int:
    return main(["run", str(write_config(text, name)), "--results", str(results), "-q"])


def journal(results: Path) -> dict[int, dict]:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return {r["sent_id"]: r for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())}


def record(results: Path) -> dict:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return json.loads((run_dir / "run.json").read_text())


def answers(records: dict[int, dict]) -> dict[int, tuple]:
    return {s: (r["box"], r["raw"], r.get("problem"), r["hit"]) for s, r in records.items()}


@pytest.fixture(scope="module")
def baseline(synth_root, tmp_path_factory):
    """An uninterrupted run at concurrency 8 against a healthy server: the reference for the others."""
    server = Server()
    try:
        tmp = tmp_path_factory.mktemp("baseline")
        path = tmp / "bench.yaml"
        path.write_text(config(synth_root, server.url, concurrency=8))
        assert main(["run", str(path), "--results", str(tmp / "r"), "-q"]) == 0
        return journal(tmp / "r"), record(tmp / "r")
    finally:
        server.stop()


def test_the_boxes_are_the_servers_answers_to_the_images_sent(baseline, synth_root):
    records, rec = baseline
    images = {i["id"]: i for i in json.loads((synth_root / "synthref" / "instances.json").read_text())["images"]}
    for r in records.values():
        image = Image.open(synth_root / "images" / images[r["image_id"]]["file_name"]).convert("RGB")
        text = colour_answer(image, PROMPT.replace("{phrase}", r["text"]))  # the answer to the pixels on disk
        assert r["raw"] == text
        box = FORMAT.decode(parse_box(text), image.width, image.height)
        assert r["box"] == pytest.approx(list(box.xywh), abs=0.01)
    assert rec["metrics"]["vlm"]["n"] == len(records) and rec["metrics"]["vlm"]["accuracy"] > 40  # the colours answerer hits
    method = rec["methods"]["vlm"]
    assert method["served"] == [{"id": "colours", "root": "colours", "owned_by": "refbench"}] and method["model"] == "colours"
    assert method["base_url"].startswith("http://127.0.0.1:") and method["declared"]["scale"] == "0-1000"


def test_answers_are_the_same_at_concurrency_1_and_8(baseline, synth_root, serve, tmp_path, write_config):
    server = serve()
    assert run(write_config, config(synth_root, server.url, concurrency=1), tmp_path / "r") == 0
    assert answers(journal(tmp_path / "r")) == answers(baseline[0])
    assert server.stats()["seen"] == len(baseline[0])  # one request per phrase


@pytest.mark.parametrize("fault", ["500", "429", "slow"], ids=["http-500", "http-429", "timeout"])
def test_retries_recover_from_transient_failures(fault, baseline, synth_root, serve, tmp_path, write_config):
    server = serve("--fail-first", "3", "--fail-with", fault, "--delay", "1.5")
    assert run(write_config, config(synth_root, server.url, concurrency=2, timeout=0.5), tmp_path / "r") == 0
    assert answers(journal(tmp_path / "r")) == answers(baseline[0])
    stats = server.stats()
    assert stats["faults"] == 3 and stats["seen"] == len(baseline[0]) + 3  # each failure was asked again


def test_refused_connections_stop_with_one_line_and_the_rerun_resumes(baseline, synth_root, serve, tmp_path, write_config,
                                                                      capsys):
    port = free_port()  # nothing listens there yet
    text = config(synth_root, f"http://127.0.0.1:{port}", runner="batch_size: 4, workers: 0", concurrency=1, retries=2)
    assert run(write_config, text, tmp_path / "r") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"endpoint http://127.0.0.1:{port}/v1/models failed: ConnectError" in err[0], err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing started

    server = serve("--exit-after", "40", port=port)  # answers 40 phrases (and any in the next 0.1 s), then stops listening
    assert run(write_config, text, tmp_path / "r") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"endpoint http://127.0.0.1:{port}/v1/chat/completions failed: " in err[0], err
    assert "(after 3 tries)" in err[0] and "run the same command to resume" in err[0]
    assert server.proc.wait(10) == 0
    kept = journal(tmp_path / "r")
    assert 0 < len(kept) < len(baseline[0]) and all(answers({s: r})[s] == answers(baseline[0])[s] for s, r in kept.items())

    serve(port=port)
    assert run(write_config, text, tmp_path / "r") == 0
    out = capsys.readouterr()
    assert f"{len(kept)} predictions kept" in out.out + out.err
    assert answers(journal(tmp_path / "r")) == answers(baseline[0])
    assert record(tmp_path / "r")["metrics"] == baseline[1]["metrics"]


def test_misses_journaled_before_a_stop_are_counted_after_the_resume(synth_root, serve, tmp_path, write_config, capsys):
    """Boxless answers journaled before the server dies, and those after the rerun resumes, are all in
    run.json's misses and in the resumed run's last line."""
    port = free_port()
    text = config(synth_root, f"http://127.0.0.1:{port}", runner="batch_size: 4, workers: 0", concurrency=1, retries=1)
    server = serve("--exit-after", "40", "--malformed", "yellow", port=port)
    assert run(write_config, text, tmp_path / "r") == 2
    assert server.proc.wait(10) == 0
    early = [r for r in journal(tmp_path / "r").values() if r.get("problem")]
    assert early and all(r["problem"] == "unparsable" and "yellow" in r["text"] for r in early)
    capsys.readouterr()
    serve("--malformed", "yellow", port=port)
    assert run(write_config, text, tmp_path / "r") == 0
    out = capsys.readouterr()
    missed = [r for r in journal(tmp_path / "r").values() if r.get("problem")]
    assert len(missed) > len(early) and all(r["problem"] == "unparsable" for r in missed)
    assert record(tmp_path / "r")["metrics"]["vlm"]["misses"] == {"unparsable": len(missed)}
    assert f"method vlm: answers scored as misses: {len(missed)} unparsable" in out.out + out.err


def test_on_error_miss_scores_failures_and_boxless_answers_as_misses(baseline, synth_root, serve, tmp_path, write_config,
                                                                    capsys):
    server = serve("--fail-phrase", "square", "--malformed", "yellow")
    text = config(synth_root, server.url, runner="workers: 0", retries=1, on_error="miss")
    assert run(write_config, text, tmp_path / "r") == 0
    got = journal(tmp_path / "r")
    failed = {s for s, r in got.items() if "square" in r["text"]}
    boxless = {s for s, r in got.items() if "yellow" in r["text"]} - failed
    assert failed and boxless
    for s, r in got.items():
        if s in failed:
            assert not r["box"] and not r["hit"] and r["problem"] == "endpoint_error"
            assert r["raw"].startswith("HTTP 500: ") and "(after 2 tries)" in r["raw"]
        elif s in boxless:
            assert not r["box"] and not r["hit"] and r["problem"] == "unparsable" and r["raw"] == NO_BOX
        else:
            assert answers({s: r})[s] == answers(baseline[0])[s]
    out = capsys.readouterr()
    assert f"{len(failed)} endpoint error, {len(boxless)} unparsable" in out.out + out.err

    # the same server, on_error: stop (the default): one line naming the error and how to go on
    assert run(write_config, config(synth_root, server.url, retries=1), tmp_path / "stop", "stop.yaml") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 500: " in err[0] and "on_error: miss" in err[0], err


def test_api_key_from_the_environment_never_recorded(synth_root, serve, tmp_path, write_config, monkeypatch, capsys):
    server = serve("--api-key", "sk-test-4242")
    monkeypatch.setenv("REFBENCH_TEST_KEY", "sk-test-4242")
    assert run(write_config, config(synth_root, server.url, api_key_env="REFBENCH_TEST_KEY"), tmp_path / "r") == 0
    (run_dir,) = list((tmp_path / "r").iterdir())
    assert all("sk-test-4242" not in p.read_text() for p in run_dir.iterdir() if p.is_file())
    monkeypatch.setenv("REFBENCH_TEST_KEY", "wrong")
    assert run(write_config, config(synth_root, server.url, api_key_env="REFBENCH_TEST_KEY"), tmp_path / "w") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 401" in err[0] and "api_key_env" in err[0], err
    monkeypatch.setenv("REFBENCH_TEST_KEY", "sk-test-4242")
    assert run(write_config, config(synth_root, server.url, api_key_env="REFBENCH_TEST_KEY", model="qwen"), tmp_path / "m") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "serves colours, not qwen" in err[0] and "model: colours" in err[0], err


@pytest.mark.parametrize("options, line", [
    ({"api_key": "sk-1"}, "api_key is written in the config, which run.json records; export the key"),
    ({"api_key_env": "REFBENCH_NO_SUCH_KEY"}, "environment variable REFBENCH_NO_SUCH_KEY (api_key_env) is not set"),
    ({"prompt": "where is it?"}, "prompt has no {phrase}"),
    ({"pattern": r"(\d+),(\d+)"}, "pattern has 2 groups; it needs 4"),
    ({"base_url": "127.0.0.1:8000"}, "is not an http(s) URL"),
])
def test_bad_options_are_one_line(options, line, synth_root, tmp_path, write_config, capsys):
    text = config(synth_root, "http://127.0.0.1:9", **options)
    assert main(["validate", str(write_config(text))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and line in err[0], err


@pytest.mark.parametrize("text, values", [
    ("<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(102,385),(410,921)<|box_end|>", [102, 385, 410, 921]),
    ('```json\n[\n\t{"bbox_2d": [35, 12, 240, 198], "label": "the cat"}\n]\n```', [35, 12, 240, 198]),
    ("The box is [0.12, 0.5, 0.75, 1.0].", [0.12, 0.5, 0.75, 1.0]),
    ('{"label": "x", "point": [1, 2, 3, 4], "bbox_2d": [5, 6, 7, 8]}', [5, 6, 7, 8]),  # bbox_2d before a list
    ("(10, 20), (30, 40) then [1, 2, 3, 4]", [10, 20, 30, 40]),  # the point pair before a list
    ("I see no such thing.", None),
    ("[1, 2, 3]", None),
])
def test_the_generic_parser(text, values):
    assert parse_box(text) == values


def test_a_served_tiny_qwen2_vl_answers_every_phrase_as_the_in_process_grounder_does(synth_root, serve, tmp_path, write_config):
    """The server runs a tiny random Qwen2-VL (``--model``), as vLLM would serve a real one: every phrase
    is sent over HTTP, answered by the model, journaled with its raw text, and decoded through the
    declared 0-1000 format; the raw texts are what the in-process qwen2_vl grounder generates for
    the same images and prompts (the image travels as a lossless PNG)."""
    from live_models.tiny.qwen import build_qwen2_vl

    folder = build_qwen2_vl(tmp_path / "qwen")
    server = serve("--model", str(folder), "--served-name", "tiny-qwen2-vl", start_s=120)
    from live_models.qwen import Qwen2Vl

    pattern = Qwen2Vl.pattern.pattern  # the same parser on both sides
    assert run(write_config, config(synth_root, server.url, runner="limit: 3", model="tiny-qwen2-vl", max_tokens=12,
                                    pattern=pattern), tmp_path / "served") == 0
    served = journal(tmp_path / "served")
    assert served and server.stats()["answered"] == len(served)
    assert len({r["raw"] for r in served.values()}) > 1  # the random model's answers differ by image and phrase
    local = bench_yaml(synth_root, f"  - {{id: vlm, ground: {{plugin: qwen2_vl, model: {folder}, max_new_tokens: 12, batch_size: 1}}}}",
                       splits="[testA]", proposer="null", extra="runner: {limit: 3}")
    assert run(write_config, local, tmp_path / "local", "local.yaml") == 0
    here = journal(tmp_path / "local")
    assert here.keys() == served.keys()
    assert {s: r["raw"] for s, r in served.items()} == {s: r["raw"] for s, r in here.items()}
    assert {s: (r["box"], r.get("problem")) for s, r in served.items()} == {s: (r["box"], r.get("problem")) for s, r in here.items()}
    assert record(tmp_path / "served")["methods"]["vlm"]["model"] == "tiny-qwen2-vl"
