"""Small helpers shared by the rollout, trajectory and evaluation tests."""

import json
from pathlib import Path

TOY = Path(__file__).resolve().parent / "fixtures" / "rollout" / "toy_envs.jsonl"


def call(name: str, **args) -> str:
    """One Qwen-format tool call, as a model would write it."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"
