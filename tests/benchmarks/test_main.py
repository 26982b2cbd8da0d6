"""The command line end to end, against a fake OpenAI-compatible server that answers with gold
outputs (so the API backend, outputs, scores and tables are all exercised, no model needed)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ftrl_lab.benchmarks import bfcl, rotbench
from ftrl_lab.benchmarks.__main__ import main
from ftrl_lab.benchmarks.taubench import UserSimulatorNotConfigured


@pytest.fixture()
def server():
    answers: dict[str, dict] = {}
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            message = answers.get(body["messages"][-1]["content"], {"role": "assistant", "content": "no idea"})
            data = json.dumps({"choices": [{"message": message, "finish_reason": "stop"}], "usage": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/v1", answers, requests
    srv.shutdown()


def test_rotbench_cli(server, tmp_path, capsys):
    url, answers, requests = server
    items = rotbench.load(levels=["clean", "heavy"], limit=2)
    for it in items:
        answers[it["messages"][-1]["content"]] = {"role": "assistant", "content": it["answers"][0]}
    out = tmp_path / "rot"
    argv = [
        "rotbench",
        "--api-base",
        url,
        "--api-key",
        "",
        "--model",
        "served",
        "--out",
        str(out),
        "--limit",
        "2",
        "--categories",
        "clean",
        "heavy",
        "--no-progress",
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "overall" in table and "100.0" in table
    assert len((out / "outputs.jsonl").read_text().splitlines()) == 4
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == "api" and meta["items"] == 4 and "api_key" not in meta["settings"]
    n = len(requests)
    assert main(argv) == 0 and len(requests) == n  # resumed: nothing asked again


def test_bfcl_cli_with_tool_calls(server, tmp_path, capsys):
    url, answers, _ = server
    items = bfcl.load(["simple", "irrelevance"], limit=3)
    for it in items:
        if it["ground_truth"]:
            name, args = next(iter(bfcl.decode_output(bfcl.gold_output(it))[0].items()))
            answers[it["messages"][-1]["content"]] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                ],
            }
    out = tmp_path / "bfcl"
    assert (
        main(
            [
                "bfcl",
                "--api-base",
                url,
                "--api-key",
                "",
                "--model",
                "served",
                "--out",
                str(out),
                "--limit",
                "3",
                "--categories",
                "simple",
                "irrelevance",
                "--no-progress",
            ]
        )
        == 0
    )
    table = (out / "table.csv").read_text()
    assert "simple,3,100.0" in table and "irrelevance,3,100.0" in table


def test_taubench_cli_needs_data_and_user(tmp_path, monkeypatch):
    for var in ("FTRL_USER_BASE_URL", "FTRL_USER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SystemExit, match="--data"):
        main(["taubench", "--out", str(tmp_path / "t")])
    fixture = Path(__file__).parents[1] / "fixtures" / "taubench" / "tasks.jsonl"
    with pytest.raises(UserSimulatorNotConfigured):
        main(["taubench", "--data", str(fixture), "--out", str(tmp_path / "t")])
