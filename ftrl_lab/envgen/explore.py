"""Inspection helpers for notebook 01: one environment stage by stage, tools called by hand.

Everything the notebook shows comes from here: `build_example` (the drafts after each
stage and the deployed record), `draw_graph` (the sub-question DAG), tables of tool
documents and of the scaling trace, `gold_plan_trace` (the gold plan run in the sandbox,
with what each call solves), `ToolCaller` and `EnvExplorer` (ipywidgets UIs) and
`level_table` (statistics per complexity level).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.records import EnvRecord
from ftrl_lab.core.reward import update_unsolved
from ftrl_lab.envgen.backend import ProceduralBackend
from ftrl_lab.envgen.decompose import SCENARIOS, DecomposeConfig
from ftrl_lab.envgen.deploy import deploy
from ftrl_lab.envgen.schema import DOMAINS, TYPES
from ftrl_lab.envgen.spec import STRATEGIES, EnvDraft
from ftrl_lab.envgen.validate import GateResult, env_meta, validate_batch
from ftrl_lab.envgen.world import World, build_world


@dataclass
class Example:
    """One environment with its intermediate drafts."""

    scenario: str
    levels: dict[str, int]
    seed: int
    domain: str | None
    stages: dict[str, EnvDraft]
    record: EnvRecord

    @property
    def decomposition(self):
        return self.stages["documents"].decomposition


def _levels(level: int | dict[str, int]) -> dict[str, int]:
    return dict(level) if isinstance(level, dict) else {s: int(level) for s in STRATEGIES}


def build_example(
    scenario: str = "multi_hop",
    level: int | dict[str, int] = 3,
    domain: str | None = None,
    seed: int = 0,
    world_seed: int = 0,
) -> Example:
    """Run the five stages for one environment (anchors restricted to `domain` if given)."""
    config = DecomposeConfig(domains=(domain,) if domain and domain != "any" else None)
    backend = ProceduralBackend(world_seed, config=config)
    rng = random.Random(f"explore:{seed}")
    levels = _levels(level)
    stages = backend.stages(scenario, levels, rng)
    record = deploy(stages["scaled"], backend.world, rng, "explore", {"seed": seed})
    return Example(scenario, levels, seed, domain, stages, record)


def world_summary(world: World | None = None) -> pd.DataFrame:
    """Per domain: entity types, attributes, relations and entities of the fictional world."""
    world = world or build_world(0)
    rows = {}
    for t in TYPES:
        r = rows.setdefault(t.domain, {"entity types": [], "attributes": 0, "relations": 0, "entities": 0})
        r["entity types"].append(t.name)
        r["attributes"] += len(t.attributes)
        r["relations"] += len(t.relations)
        r["entities"] += len(world.by_type[t.name])
    df = pd.DataFrame.from_dict(rows, orient="index")
    df["entity types"] = df["entity types"].map(", ".join)
    df.loc["total"] = ["", df["attributes"].sum(), df["relations"].sum(), df["entities"].sum()]
    return df


def sample_entities(type_name: str, n: int = 3, world: World | None = None) -> pd.DataFrame:
    world = world or build_world(0)
    return pd.DataFrame([{"name": e.name, **e.values} for e in world.by_type[type_name][:n]]).set_index("name")


def subquestion_table(example: Example) -> pd.DataFrame:
    """Sub-questions with gold answers, dependencies and the tool that answers each."""
    tool_of = {c.sub_id: c.tool for c in example.stages["scaled"].calls}
    return pd.DataFrame(
        [
            {
                "id": s.id,
                "sub-question": s.text,
                "gold answer": s.answer,
                "depends on": ", ".join(s.depends_on),
                "kind": s.kind,
                "tool": tool_of.get(s.id, ""),
            }
            for s in example.decomposition.subs
        ]
    ).set_index("id")


def documents_frame(docs: list[dict]) -> pd.DataFrame:
    """One row per tool document: parameters, required ones, types, description."""
    rows = []
    for d in docs:
        f = d["function"]
        props = f["parameters"].get("properties", {})
        types: dict[str, int] = {}
        for p in props.values():
            types[p.get("type", "?")] = types.get(p.get("type", "?"), 0) + 1
        rows.append(
            {
                "tool": f["name"],
                "params": len(props),
                "required": ", ".join(f["parameters"].get("required", [])),
                "types": ", ".join(f"{k}:{v}" for k, v in sorted(types.items())),
                "enums": sum("enum" in p for p in props.values()),
                "description": f.get("description", "")[:90],
            }
        )
    return pd.DataFrame(rows).set_index("tool")


def scaling_trace(example: Example) -> pd.DataFrame:
    """Tools, parameters per tool and types after integration and after each scaling strategy."""
    rows = [
        {
            "step": "documents (1 per sub-question)",
            "level": "",
            "tools": len(example.stages["documents"].tools),
            "params_per_tool": round(
                sum(len(t.params) for t in example.stages["documents"].tools) / len(example.stages["documents"].tools),
                2,
            ),
        }
    ]
    for name, level, s in example.stages["scaled"].notes["scaling_trace"]:
        rows.append(
            {
                "step": name if name == "integrated" else f"+ {name}",
                "level": level,
                "tools": s["tools"],
                "params_per_tool": s["params_per_tool"],
                "enums": s["enums"],
                "defaults": s["with_default"],
                "types": ", ".join(f"{k}:{v}" for k, v in sorted(s["types"].items())),
            }
        )
    return pd.DataFrame(rows).set_index("step")


def sub_depths(subs) -> dict[str, int]:
    """Depth of each sub-question in the dependency graph (0: needs no other sub-answer)."""
    depth: dict[str, int] = {}
    for s in subs:  # sub-questions come in dependency order
        depth[s.id] = 1 + max((depth[d] for d in s.depends_on), default=-1)
    return depth


BOX_COLOURS = {  # sub-question kind -> (face colour, legend label)
    "attribute": ("#cfe8ff", "attribute look-up"),
    "relation": ("#ffe7c2", "relation hop (to another entity)"),
    "aggregate": ("#d9f2d0", "combining step (arithmetic on earlier answers)"),
    "combine": ("#f3e0f7", "combining step (done in the final answer)"),
}
COMPOSITION_TEXT = {
    "sum": "add them up",
    "difference": "take the difference",
    "year_gap": "years between them",
    "max": "take the larger",
    "min": "take the smaller",
    "earliest": "take the earliest",
    "list": "list both",
}


def graph_legend_handles(kinds: set[str] | None = None) -> list:
    """Legend patches for the box colours of :func:`draw_graph` (all kinds, or those given)."""
    from matplotlib.patches import Patch

    return [
        Patch(fc=fc, ec="0.5", label=label)
        for kind, (fc, label) in BOX_COLOURS.items()
        if kinds is None or kind in kinds
    ]


def draw_graph(example: Example, ax=None, fontsize: float = 9, legend: bool = True):
    """The decomposition as a DAG: one box per sub-question (id, question, gold answer). When
    parallel branches are combined without a sub-question of their own (a comparison, a list),
    a final "combine" box shows that step and the final answer."""
    import textwrap

    import matplotlib.pyplot as plt

    decomposition = example.decomposition
    subs = decomposition.subs
    depth = sub_depths(subs)
    chains = sorted({s.chain for s in subs if s.chain >= 0})
    pos = {s.id: (depth[s.id], -chains.index(s.chain)) for s in subs if s.chain >= 0}
    for s in subs:  # an aggregate step sits level with the mean of what it combines
        if s.chain < 0:
            pos[s.id] = (depth[s.id], sum(pos[d][1] for d in s.depends_on) / len(s.depends_on))
    nodes = [
        (s.id, s.kind, s.depends_on, f"{s.id}: " + "\n".join(textwrap.wrap(s.text, 24)[:3]) + f"\n→ {s.answer}")
        for s in subs
    ]
    if len(chains) > 1 and not any(s.chain < 0 for s in subs):  # combined in the final answer
        ends = [max((s for s in subs if s.chain == c), key=lambda s: depth[s.id]).id for c in chains]
        how = COMPOSITION_TEXT.get(decomposition.composition, decomposition.composition)
        pos["final"] = (max(depth.values()) + 1, sum(pos[e][1] for e in ends) / len(ends))
        answer = "\n".join(textwrap.wrap(str(decomposition.answer), 24)[:2])
        nodes.append(("final", "combine", ends, f"combine: {how}\n→ {answer}"))
    width = max(x for x, _ in pos.values()) + 1
    height = len(chains)
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(3.2 * width + 1, 30), 1.9 * height + 1.6))
    else:
        fig = ax.figure
    for node_id, _kind, deps, _label in nodes:
        for d in deps:
            (x0, y0), (x1, y1) = pos[d], pos[node_id]
            ax.annotate(
                "", xy=(x1 - 0.38, y1), xytext=(x0 + 0.38, y0), arrowprops=dict(arrowstyle="->", color="0.4", lw=1.2)
            )
    for node_id, kind, _deps, label in nodes:
        x, y = pos[node_id]
        ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=fontsize,
            bbox=dict(boxstyle="round,pad=0.4", fc=BOX_COLOURS.get(kind, ("#eee", ""))[0], ec="0.5"),
        )
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-height + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(
        f"{example.scenario}: " + "\n".join(textwrap.wrap(decomposition.question, 100)),
        fontsize=fontsize + 1,
        loc="left",
    )
    if legend:
        ax.legend(
            handles=graph_legend_handles({k for _, k, _, _ in nodes}),
            loc="upper left",
            bbox_to_anchor=(0, 0),
            ncol=4,
            fontsize=fontsize - 1,
            frameon=False,
        )
    return fig


def gold_plan_trace(record: EnvRecord, executor: ToolExecutor | None = None) -> pd.DataFrame:
    """Run the gold plan in the sandbox: per call its arguments, output and the answer it solves."""
    meta = env_meta(record)
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": c["tool"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)},
        }
        for i, c in enumerate(meta["gold_plan"])
    ]
    outputs = (executor or sandbox_executor())([(record.codes, calls)])[0]
    remaining = {k: list(v) for k, v in record.unsolved_set.items()}
    rows = []
    for c, call, out in zip(meta["gold_plan"], calls, outputs):
        solved = update_unsolved(remaining, [call], [out])[0]
        rows.append(
            {
                "sub-question": c["sub_id"],
                "tool": c["tool"],
                "arguments": call["function"]["arguments"],
                "output": str(out)[:160],
                "solved": solved,
                "still unsolved": sum(len(v) for v in remaining.values()),
            }
        )
    return pd.DataFrame(rows)


def gate_checks(record: EnvRecord, executor: ToolExecutor | None = None) -> GateResult:
    """The validation gate's verdict on one record."""
    return validate_batch([record], executor)[0]


def level_table(n_per_level: int = 40, seed: int = 0) -> pd.DataFrame:
    """Statistics of environments generated at each complexity level 0-3 (all four strategies)."""
    backend = ProceduralBackend(seed)
    rows = []
    for level in range(4):
        recs = [
            backend.generate(SCENARIOS[i % 4], _levels(level), random.Random(f"levels:{seed}:{level}:{i}"))
            for i in range(n_per_level)
        ]
        params = [p for r in recs for t in r.tools for p in t["function"]["parameters"]["properties"].values()]
        rows.append(
            {
                "level": level,
                "tools per env": round(sum(len(r.tools) for r in recs) / len(recs), 2),
                "params per tool": round(len(params) / sum(len(r.tools) for r in recs), 2),
                "non-string params": round(sum(p["type"] != "string" for p in params) / len(params), 3),
                "with enum": round(sum("enum" in p for p in params) / len(params), 3),
                "code lines per tool": round(
                    sum(c.count("\n") for r in recs for c in r.codes.values()) / sum(len(r.codes) for r in recs), 1
                ),
            }
        )
    return pd.DataFrame(rows).set_index("level")


def plot_levels(levels: pd.DataFrame, ax=None):
    """Tools per environment and parameters per tool at each complexity level (:func:`level_table`)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for column, marker in (("tools per env", "o"), ("params per tool", "s")):
        ax.plot(levels.index, levels[column], marker=marker, label=f"{column} (mean)")
    ax.set_xticks(list(levels.index))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("complexity level (all four scaling strategies at this level)")
    ax.set_ylabel("mean count")
    ax.set_ylim(0, None)
    ax.legend(fontsize=9, loc="upper left")
    ax.set_title("Environment size per complexity level", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.get_figure().tight_layout()
    return ax


# --- widgets ------------------------------------------------------------------------------------
class ToolCaller:
    """Call an environment's tools by hand (in the sandbox) and see what each call solves."""

    def __init__(self, record: EnvRecord, executor: ToolExecutor | None = None):
        self.record = record
        self.executor = executor or sandbox_executor()
        self.remaining = {k: list(v) for k, v in record.unsolved_set.items()}
        self.history: list[dict[str, Any]] = []
        plan = env_meta(record).get("gold_plan", [])
        self.examples = {c["tool"]: c["arguments"] for c in plan}

    def call(self, tool: str, arguments: str | dict) -> dict[str, Any]:
        """One call: returns output, the gold answer solved (if any) and how many remain."""
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        call = {"id": f"call_{len(self.history)}", "type": "function", "function": {"name": tool, "arguments": args}}
        out = self.executor([(self.record.codes, [call])])[0][0]
        solved = update_unsolved(self.remaining, [call], [out])[0]
        entry = {
            "tool": tool,
            "arguments": args,
            "output": out,
            "solved": solved,
            "still unsolved": sum(len(v) for v in self.remaining.values()),
        }
        self.history.append(entry)
        return entry

    def widget(self):
        import ipywidgets as w

        names = [t["function"]["name"] for t in self.record.tools]
        tool = w.Dropdown(options=names, description="tool", layout=w.Layout(width="60%"))
        args = w.Textarea(layout=w.Layout(width="95%", height="70px"))
        button = w.Button(description="Call", button_style="primary")
        out = w.Output()

        def prefill(*_):
            doc = next(t for t in self.record.tools if t["function"]["name"] == tool.value)
            example = self.examples.get(tool.value) or {
                r: "" for r in doc["function"]["parameters"].get("required", [])
            }
            args.value = json.dumps(example, ensure_ascii=False)

        def on_click(_):
            entry = self.call(tool.value, args.value)
            with out:
                print(
                    f"{entry['tool']}({entry['arguments']})\n  -> {entry['output'][:400]}\n  solved: "
                    f"{entry['solved']!r}; still unsolved: {entry['still unsolved']}"
                )

        tool.observe(prefill, names="value")
        prefill()
        button.on_click(on_click)
        return w.VBox([w.HTML(f"<b>Question:</b> {self.record.question}"), tool, args, button, out])


class EnvExplorer:
    """Pick scenario, complexity level, domain and seed; see the environment stage by stage."""

    def __init__(self, scenario: str = "multi_hop", level: int = 3, domain: str = "any", seed: int = 0):
        self.state = {"scenario": scenario, "level": level, "domain": domain, "seed": seed}

    def example(self) -> Example:
        s = self.state
        return build_example(s["scenario"], s["level"], s["domain"], s["seed"])

    def render(self) -> None:
        """Display the current environment (works without widgets, e.g. under papermill)."""
        import matplotlib.pyplot as plt
        from IPython.display import Markdown, display

        ex = self.example()
        display(
            Markdown(
                f"**Question:** {ex.record.question}  \n**Final answer:** `{ex.record.answer}`  \n"
                f"**unsolved_set:** `{json.dumps(ex.record.unsolved_set, ensure_ascii=False)}`"
            )
        )
        fig = draw_graph(ex)
        display(fig)
        plt.close(fig)
        display(subquestion_table(ex))
        display(Markdown("**Tool documents after integration** (before scaling):"))
        display(documents_frame(ex.stages["integrated"].documents()))
        display(Markdown("**After complexity scaling:**"))
        display(scaling_trace(ex))
        display(documents_frame(ex.record.tools))

    def widget(self):
        import ipywidgets as w

        s = self.state
        scenario = w.Dropdown(options=list(SCENARIOS), value=s["scenario"], description="scenario")
        level = w.IntSlider(value=s["level"], min=0, max=3, description="complexity")
        domain = w.Dropdown(options=["any"] + list(DOMAINS), value=s["domain"], description="domain")
        seed = w.BoundedIntText(value=s["seed"], min=0, max=10**6, description="seed")
        out = w.Output()

        def update(*_):
            self.state.update(scenario=scenario.value, level=level.value, domain=domain.value, seed=seed.value)
            out.clear_output(wait=True)
            with out:
                self.render()

        for control in (scenario, level, domain, seed):
            control.observe(update, names="value")
        update()
        return w.VBox([w.HBox([scenario, level]), w.HBox([domain, seed]), out])
