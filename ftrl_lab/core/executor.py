"""The one tool-executor protocol, and its two adapters.

A :data:`ToolExecutor` takes a batch ``[(codes, tool_calls), ...]`` (one item per environment:
the environment's tool sources and the OpenAI-style calls to run in it, in order) and returns one
list of feedback strings per item, one string per call. Rollouts, the reward, environment
validation, SFT trajectories and the benchmarks all take this type.

- :func:`sandbox_executor`: the isolated sandbox (:mod:`ftrl_lab.core.sandbox`), the default
  everywhere untrusted code runs.
- :func:`inprocess_executor`: FTRL's own unisolated ``exec`` (:mod:`ftrl_lab.core.ftrl_executor`),
  for trusted code and parity checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

ToolExecutor = Callable[[Sequence[tuple[dict, list[dict]]]], list[list[str]]]
"""``[(codes, tool_calls), ...]`` (one item per environment) -> feedback strings per call."""


def sandbox_executor(sandbox: Any = None, exec_mode: str = "ftrl", **sandbox_kwargs: Any) -> ToolExecutor:
    """Run every environment's calls in the isolated sandbox (the shared one by default).

    ``exec_mode`` "ftrl" (default) or "fresh": the namespace semantics of the tool exec, as for
    :func:`inprocess_executor` (passed with every batch, so a shared sandbox serves both)."""
    from ftrl_lab.core.ftrl_exec import EXEC_MODES

    if exec_mode not in EXEC_MODES:
        raise ValueError(f"unknown exec mode '{exec_mode}' (choose from {EXEC_MODES})")

    def run(items: Sequence[tuple[dict, list[dict]]]) -> list[list[str]]:
        from ftrl_lab.core.sandbox import get_sandbox

        box = sandbox or get_sandbox(**sandbox_kwargs)
        return [[r.content for r in results] for results in box.run_batch(list(items), exec_mode=exec_mode)]

    return run


def inprocess_executor(timeout: float = 10.0, mode: str = "ftrl") -> ToolExecutor:
    """FTRL's unisolated in-process executor (trusted tool code only; fast, for tests).

    ``mode`` "ftrl" (default): tool sources run as FTRL runs them (module-level names of a source
    invisible to its function); "fresh": each source in its own namespace
    (:func:`ftrl_lab.core.ftrl_executor.exec_tool`).
    """
    from ftrl_lab.core.ftrl_exec import EXEC_MODES

    if mode not in EXEC_MODES:
        raise ValueError(f"unknown exec mode '{mode}' (choose from {EXEC_MODES})")

    def run(items: Sequence[tuple[dict, list[dict]]]) -> list[list[str]]:
        from ftrl_lab.core.ftrl_executor import inprocess_feedback

        return [inprocess_feedback(codes, calls, timeout, mode) for codes, calls in items]

    return run


def run_calls(executor: ToolExecutor | None, codes: dict, tool_calls: list[dict]) -> list[str]:
    """The feedback of one environment's calls (``executor`` None: the sandbox)."""
    return (executor or sandbox_executor())([(codes, tool_calls)])[0]
