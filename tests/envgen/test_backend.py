"""Generators: the EnvGenerator interface, the procedural backend, complexity specs."""

import random

import pytest

from ftrl_lab.envgen.backend import EnvGenerator, GenerationError, ProceduralBackend, draw_levels, parse_complexity
from ftrl_lab.envgen.decompose import DecomposeConfig
from ftrl_lab.envgen.spec import STRATEGIES

TOP = {s: 3 for s in STRATEGIES}


def test_parse_and_draw_complexity():
    assert parse_complexity("3") == {"*": (3, 3)}
    assert parse_complexity("0-3") == {"*": (0, 3)}
    spec = parse_complexity("fg=3,pe=2,pt=0-3")
    assert spec == {"functional": (3, 3), "parameters": (2, 2), "types": (0, 3), "toolset": (0, 0)}
    levels = draw_levels(parse_complexity("0-3"), random.Random(1))
    assert len(set(levels.values())) == 1  # one shared level per environment
    drawn = [draw_levels(spec, random.Random(i))["types"] for i in range(40)]
    assert set(drawn) == {0, 1, 2, 3}
    for bad in ("4", "3-1", "fg=9", "speed=1", "fg:1", "x"):
        with pytest.raises(ValueError, match="complexity"):
            parse_complexity(bad)


def test_procedural_backend_is_deterministic_per_stream():
    b = ProceduralBackend(0)
    assert isinstance(b, EnvGenerator) and b.describe()["world_seed"] == 0
    a = b.generate("parallel_multi_hop", TOP, random.Random("s:1"))
    c = b.generate("parallel_multi_hop", TOP, random.Random("s:1"))
    d = b.generate("parallel_multi_hop", TOP, random.Random("s:2"))
    assert a.to_row() == c.to_row() and a.question != d.question


def test_stages_show_the_draft_after_each_stage():
    b = ProceduralBackend(0)
    st = b.stages("multi_hop", TOP, random.Random(3))
    assert list(st) == ["documents", "integrated", "scaled"]
    assert len(st["documents"].tools) == len(st["documents"].decomposition.subs)
    assert len(st["integrated"].tools) <= len(st["documents"].tools)
    assert len(st["scaled"].tools) >= len(st["integrated"].tools)
    with pytest.raises(ValueError, match="unknown scenario"):
        b.stages("zero_hop", TOP, random.Random(0))


def test_generation_failures_become_generation_errors():
    b = ProceduralBackend(0, config=DecomposeConfig(domains=("no_such_domain",)))
    with pytest.raises(GenerationError) as e:
        b.generate("single_hop", TOP, random.Random(0))
    assert e.value.reason == "generation_error" and "no_such_domain" in e.value.detail
