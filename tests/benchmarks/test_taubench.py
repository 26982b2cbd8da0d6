"""tau-bench on a tiny synthetic bank domain (2 tools, 2 tables) with a scripted user:
database-hash check, gold outputs, Pass^1, resumability, and the simulated-user client."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ftrl_lab.benchmarks import taubench as tb
from ftrl_lab.core.parsing import render_qwen_calls
from ftrl_lab.core.records import RecordError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "taubench" / "tasks.jsonl"


@pytest.fixture(scope="module")
def sandbox():
    with tb.tau_sandbox() as sb:
        yield sb


@pytest.fixture(scope="module")
def items():
    return tb.load(FIXTURE)


def call(name, **args):
    return {"id": "c", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def scripted_user(instruction, transcript):
    """Opens with the instruction, says STOP as soon as the agent has replied once."""
    return instruction if len(transcript) == 1 else tb.STOP


def agent(plan):
    """A scripted agent: the user id in the opening message picks a list of turns; a turn is a
    tool call (dict) or a reply (str)."""

    def policy(convs, tools):
        out = []
        for conv in convs:
            user_id = "alice" if "alice" in conv[1]["content"] else "bob"
            k = sum(m["role"] == "assistant" for m in conv)
            turn = plan[user_id][min(k, len(plan[user_id]) - 1)]
            out.append(render_qwen_calls([turn]) if isinstance(turn, dict) else turn)
        return out

    return policy


GOOD = {
    "alice": [
        call("transfer", from_user="alice", to_user="bob", amount=30),
        call("get_balance", user_id="alice"),
        "Done: your balance is now 70.",
    ],
    "bob": [call("get_balance", user_id="bob"), "Your balance is 50."],
}


def test_load_and_domain(items):
    assert [it["id"] for it in items] == ["bank/0", "bank/1"]
    dom = tb.load_domain(items[0]["domain_dir"])
    assert set(dom.tables) == {"accounts", "log"} and dom.wiki.startswith("# Bank")
    assert [t["function"]["name"] for t in dom.tools] == ["get_balance", "transfer"]


def test_env_runs_tools_on_its_own_copy(items, sandbox):
    dom = tb.load_domain(items[0]["domain_dir"])
    env = tb.TauEnv(dom, sandbox)
    start = env.hash()
    assert env.call(call("get_balance", user_id="alice")) == "100"
    out = json.loads(env.call(call("transfer", from_user="alice", to_user="bob", amount=30)))
    assert out["from"]["balance"] == 70 and env.db["log"] == [{"from": "alice", "to": "bob", "amount": 30}]
    assert env.hash() != start and dom.tables["accounts"]["alice"]["balance"] == 100
    assert env.call(call("nope")) == "an error occured when call nope: 'nope'"
    assert env.call(call("transfer", from_user="alice")).startswith("an error occured when call transfer: transfer()")
    assert tb.gold_hash(items[0], sandbox) == env.hash()
    assert tb.gold_hash(items[1], sandbox) == start


def test_good_agent_passes(items, sandbox, tmp_path):
    out = tmp_path / "tau.jsonl"
    rows = tb.run(agent(GOOD), items, out, user=scripted_user, sandbox=sandbox, show_progress=False)
    assert [r["ended"] for r in rows] == ["stop", "stop"]
    results = tb.score(items, rows)
    assert [r["pass"] for r in results] == [1.0, 1.0]
    assert tb.table(results).loc["overall", "pass^1"] == 100.0
    assert rows[0]["messages"][0]["role"] == "system"  # the wiki is the agent's system prompt

    def never(convs, tools):
        raise AssertionError("finished tasks must not run again")

    assert tb.run(never, items, out, user=scripted_user, sandbox=sandbox, show_progress=False) == rows


@pytest.mark.parametrize(
    "plan, expect",
    [
        (
            {**GOOD, "alice": [call("transfer", from_user="alice", to_user="bob", amount=40), "Your balance is 70."]},
            {"db_match": 0.0, "outputs_said": 1.0},
        ),  # wrong value
        (
            {**GOOD, "alice": [call("transfer", from_user="alice", to_user="bob", amount=30), "Done."]},
            {"db_match": 1.0, "outputs_said": 0.0},
        ),  # output not said
        (
            {**GOOD, "alice": [call("transfer", from_user="alice", amount=30), "Your balance is 70."]},
            {"db_match": 0.0, "outputs_said": 1.0},
        ),  # missing argument
        (
            {**GOOD, "alice": [call("send_money", user="bob"), "Your balance is 70."]},
            {"db_match": 0.0, "outputs_said": 1.0},
        ),  # wrong function
        (
            {**GOOD, "alice": [call("transfer", from_user="alice", to_user="bob", amount="30"), "70 left."]},
            {"db_match": 0.0, "outputs_said": 1.0},
        ),  # wrong type
    ],
)
def test_corrupted_agents_fail(items, sandbox, plan, expect):
    rows = tb.run(agent(plan), items[:1], None, user=scripted_user, sandbox=sandbox, show_progress=False)
    r = tb.score(items[:1], rows)[0]
    assert r["pass"] == 0.0 and {k: r[k] for k in expect} == expect


def test_only_first_call_kept_and_transfer_ends(items, sandbox):
    two = render_qwen_calls(
        [
            call("transfer", from_user="alice", to_user="bob", amount=30),
            call("transfer", from_user="alice", to_user="bob", amount=30),
        ]
    )
    policy = agent({"alice": [two, "Your balance is 70."], "bob": ["x"]})
    rows = tb.run(policy, items[:1], None, user=scripted_user, sandbox=sandbox, show_progress=False)
    assert tb.score(items[:1], rows)[0]["pass"] == 1.0
    assert len(rows[0]["messages"][2]["tool_calls"]) == 1


def test_no_user_configured(items, monkeypatch):
    for var in ("FTRL_USER_BASE_URL", "FTRL_USER_MODEL", "FTRL_USER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(tb.UserSimulatorNotConfigured, match="FTRL_USER_BASE_URL"):
        tb.run(agent(GOOD), items, None, show_progress=False)


def test_user_simulator_client(monkeypatch):
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["path"] = self.path
            seen["auth"] = self.headers.get("Authorization")
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "I want to pay 30."}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("FTRL_USER_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("FTRL_USER_MODEL", "sim")
        monkeypatch.setenv("FTRL_USER_API_KEY", "k")
        user = tb.UserSimulator.from_env()
        assert user("Pay bob.", [("agent", tb.FIRST_AGENT_LINE)]) == "I want to pay 30."
    finally:
        server.shutdown()
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k"
    msgs = seen["body"]["messages"]
    assert msgs[0]["role"] == "system" and "Pay bob." in msgs[0]["content"] and tb.STOP in msgs[0]["content"]
    assert msgs[1] == {"role": "user", "content": tb.FIRST_AGENT_LINE}
    assert seen["body"]["model"] == "sim" and seen["body"]["temperature"] == 0.0


def test_bad_inputs_are_located(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps({"instruction": "x", "actions": [{"name": "f"}], "data_source": "tau-bench/bank"}) + "\n")
    with pytest.raises(RecordError, match=r"t\.jsonl:1: field 'actions\[0\]'"):
        tb.load(bad)
    with pytest.raises(FileNotFoundError, match="tools.json"):
        tb.load_domain(str(tmp_path))


def test_outputs_said_rules():
    msgs = [
        {"role": "assistant", "content": "", "tool_calls": [call("x")]},
        {"role": "assistant", "content": "You saved 23,553 dollars."},
    ]
    assert tb.outputs_said(msgs, ["23553"])
    assert not tb.outputs_said(msgs[:1] + [{"role": "tool", "content": "23553"}], ["23553"])


def test_rollout_policy_keeps_one_episode_per_task(items, sandbox):
    from ftrl_lab.agent.policies import ScriptedPolicy

    plan = agent(GOOD)
    seen = set()

    def script(ep):
        seen.add(ep.index)
        return plan([ep.messages], [ep.record.tools])[0]

    policy = ScriptedPolicy(script)
    rows = tb.run(policy, items, None, user=scripted_user, sandbox=sandbox, show_progress=False)
    assert [r["pass"] for r in tb.score(items, rows)] == [1.0, 1.0]
    assert len(seen) == 2 and policy.released == 2  # same id on every turn of a task, released at its end


@pytest.fixture(scope="module")
def tiny_policy():
    from ftrl_lab.agent.engine import Engine, SamplingParams
    from ftrl_lab.agent.models import tiny_model
    from ftrl_lab.agent.policies import LocalPolicy

    model, tok = tiny_model(seed=0)
    return LocalPolicy(Engine(model, tok, batch_size=2), SamplingParams(max_new_tokens=6))


def test_offline_run_with_a_local_user_simulator(items, sandbox, tiny_policy, tmp_path):
    """End to end without a network: a tiny random model plays the agent and the user."""
    user = tb.LocalUserSimulator(tiny_policy, name="tiny-random")
    assert tb.describe_user(user) == "local user simulator: tiny-random through the engine"
    first = user("Pay bob 30.", [("agent", tb.FIRST_AGENT_LINE)])
    assert isinstance(first, str) and "<|im_end|>" not in first
    rows = tb.run(
        tiny_policy, items, tmp_path / "tau.jsonl", user=user, max_turns=2, sandbox=sandbox, show_progress=False
    )
    assert len(rows) == 2 and all(r["ended"] in ("stop", "transfer", "max_turns") for r in rows)
    assert all(r["user_simulator"].startswith(tb.LOCAL_FLAG) for r in rows)
    assert not any(r["paper_user"] for r in rows)
    assert all(m["role"] in ("system", "user", "assistant", "tool") for r in rows for m in r["messages"])
    results = tb.score(items, rows)
    assert {r["user_simulator"] for r in results} == {"local user simulator: tiny-random through the engine"}
    table = tb.table(results)
    assert table.loc["overall", "user_simulator"].startswith(tb.LOCAL_FLAG)
    assert 0.0 <= table.loc["overall", "pass^1"] <= 100.0


def test_user_descriptions_flag_what_is_not_the_papers():
    remote = tb.UserSimulator("https://api.openai.com/v1", tb.PAPER_USER)
    local_url = tb.UserSimulator("http://127.0.0.1:8000/v1", "qwen")
    assert (
        tb.is_paper_user(remote)
        and not remote.local
        and remote.describe() == f"{tb.PAPER_USER} at https://api.openai.com/v1"
    )
    assert local_url.local and not tb.is_paper_user(local_url)
    assert local_url.describe().startswith("local user simulator: qwen at http://127.0.0.1")
    assert not tb.is_paper_user(tb.UserSimulator("https://example.org/v1", "llama"))
    assert tb.describe_user(scripted_user) == "scripted user (scripted_user)" and not tb.is_paper_user(scripted_user)
