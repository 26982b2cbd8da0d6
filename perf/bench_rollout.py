"""Multi-turn rollouts: FTRL-style generation against the cache-reusing batched engine.

Both sides play the same environments with the same default model, greedily, in one process:

* FTRL-style: one environment at a time; every turn the whole conversation is rendered,
  tokenized and run through plain ``model.generate`` (full re-prefill);
* ours: :class:`ftrl_lab.agent.engine.Engine` through :class:`ftrl_lab.agent.rollout.LocalPolicy`,
  ``--batch-size`` environments at a time, KV caches kept across turns, batched decoding.

Environments: the ``--n-envs`` FTRL test records with the shortest prompts. SmolLM2-135M
seldom calls tools by itself, so the first ``--forced-turns`` turns of every episode use a
scripted call of a gold tool (example arguments from its schema, ``ftrl_lab.core.schema_args``);
the model still generates on those turns (its output is compared and timed), and from then
on its own output drives the episode, up to ``--max-turns``. Tool calls run in-process
(FTRL's executor) on both sides, so the timings are about generation.

Reports wall and CPU time, episodes/s, generated tokens/s, the speed-up, and whether the two
sides produced identical transcripts (they must). Writes ``runs/bench/rollout.json``.

Usage: ``python perf/bench_rollout.py [--n-envs 4] [--max-new-tokens 48] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from ftrl_lab.agent.engine import Engine, SamplingParams  # noqa: E402
from ftrl_lab.agent.evaluate import machine_info  # noqa: E402
from ftrl_lab.agent.models import load_model  # noqa: E402
from ftrl_lab.agent.policies import ForcedTurnsPolicy, HFGeneratePolicy, LocalPolicy  # noqa: E402
from ftrl_lab.agent.rollout import rollout  # noqa: E402
from ftrl_lab.core.executor import inprocess_executor  # noqa: E402
from ftrl_lab.core.records import default_test_set, load_records  # noqa: E402
from ftrl_lab.core.schema_args import example_arguments  # noqa: E402


def scripted_call(ep) -> str:
    """Turn t calls the t-th gold tool of the environment (cycling) with schema example arguments."""
    gold = [t for t in ep.record.tools if t["function"]["name"] in ep.record.unsolved_set] or ep.record.tools
    tool = gold[len(ep.turns) % len(gold)]
    args = example_arguments(tool, "required")
    return "<tool_call>\n" + json.dumps({"name": tool["function"]["name"], "arguments": args}) + "\n</tool_call>"


def pick_envs(path: Path, n: int) -> list:
    records = load_records(path)
    return sorted(records, key=lambda r: (len(json.dumps(r.tools)), r.question))[:n]


def play(name: str, envs, policy, max_turns: int, max_active: int, forced_turns: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    episodes = rollout(
        envs,
        ForcedTurnsPolicy(policy, scripted_call, turns=forced_turns),
        max_turns=max_turns,
        max_active=max_active,
        executor=inprocess_executor(),
        progress=True,
        desc=name,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    turns = [t for ep in episodes for t in ep.turns]
    generated = sum(t.completion_tokens for t in turns)
    return {
        "episodes": episodes,
        "wall_s": wall,
        "cpu_s": cpu,
        "turns": len(turns),
        "generated_tokens": generated,
        "prompt_tokens": sum(t.prompt_tokens for t in turns),
        "prefilled_tokens": sum(t.prefilled_tokens for t in turns),
        "episodes_per_s": len(episodes) / wall,
        "gen_tokens_per_s": generated / wall,
    }


def transcript(ep) -> list:
    """What must agree: the conversation and the model's own output on every turn."""
    return [ep.messages, [t.generated if t.generated is not None else t.response for t in ep.turns]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--forced-turns", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: best on this shared 2-core machine)")
    parser.add_argument("--data", default=str(default_test_set()))
    parser.add_argument("--out", default="runs/bench/rollout.json")
    args = parser.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"bench_rollout: {args.data} not found (set FTRL_TEST_SET or --data)")
    torch.set_num_threads(args.threads)
    model, tok = load_model("default")
    envs = pick_envs(Path(args.data), args.n_envs)
    engine = Engine(model, tok, batch_size=args.batch_size)
    ids = engine.encode_chat(envs[0].messages, envs[0].tools)
    print(
        f"{len(envs)} environments, prompts {min(len(engine.encode_chat(e.messages, e.tools)) for e in envs)}-"
        f"{max(len(engine.encode_chat(e.messages, e.tools)) for e in envs)} tokens; load {os.getloadavg()}"
    )
    with torch.inference_mode():  # warm up both code paths on a short input
        model.generate(torch.tensor([ids[:64]]), max_new_tokens=2, do_sample=False)
    engine.generate([ids[:64]], SamplingParams(max_new_tokens=2))

    ftrl = play(
        "ftrl-style",
        envs,
        HFGeneratePolicy(model, tok, max_new_tokens=args.max_new_tokens),
        args.max_turns,
        1,
        args.forced_turns,
    )
    ours = play(
        "ours",
        envs,
        LocalPolicy(engine, SamplingParams(max_new_tokens=args.max_new_tokens)),
        args.max_turns,
        args.batch_size,
        args.forced_turns,
    )
    identical = [transcript(a) == transcript(b) for a, b in zip(ftrl["episodes"], ours["episodes"])]

    rows = []
    for name, r in (("FTRL-style (re-prefill, one env at a time)", ftrl), ("ours (KV reuse, batched)", ours)):
        rows.append({"method": name, **{k: v for k, v in r.items() if k != "episodes"}})
    speedup = ftrl["wall_s"] / ours["wall_s"]
    cpu_speedup = ftrl["cpu_s"] / ours["cpu_s"]
    print(
        "\n| method | wall s | CPU s | turns | prefilled / prompt tokens | generated tokens | episodes/s | gen tok/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['turns']} | "
            f"{r['prefilled_tokens']} / {r['prompt_tokens']} | {r['generated_tokens']} | "
            f"{r['episodes_per_s']:.4f} | {r['gen_tokens_per_s']:.2f} |"
        )
    print(
        f"\nspeed-up: {speedup:.2f}x wall, {cpu_speedup:.2f}x CPU time; identical transcripts: "
        f"{sum(identical)}/{len(identical)}; load average after: {os.getloadavg()}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "settings": vars(args),
                "rows": rows,
                "speedup_wall": speedup,
                "speedup_cpu": cpu_speedup,
                "identical": identical,
                "machine": machine_info(),
                "environments": [e.question for e in envs],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out}")
    return 0 if all(identical) else 1


if __name__ == "__main__":
    sys.exit(main())
