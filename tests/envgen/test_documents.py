"""Document generation: one valid OpenAI function schema per sub-question, and the gold calls."""

import random

from ftrl_lab.core.records import tool_schema_errors
from ftrl_lab.envgen.decompose import decompose
from ftrl_lab.envgen.documents import generate_documents, unique_name
from ftrl_lab.envgen.world import build_world, parse_number

WORLD = build_world(0)


def test_one_tool_per_sub_question_with_valid_schemas():
    for i in range(40):
        d = decompose(WORLD, "parallel_multi_hop", random.Random(i))
        draft = generate_documents(d, random.Random(i))
        assert len(draft.tools) == len(d.subs) == len(draft.calls)
        names = [t.name for t in draft.tools]
        assert len(set(names)) == len(names)
        for tool, sub, call in zip(draft.tools, d.subs, draft.calls):
            doc = tool.to_openai()
            assert tool_schema_errors(doc) == []
            assert call.tool == tool.name and call.sub_id == sub.id
            if sub.kind == "aggregate":
                assert tool.kind == "calculator" and call.arguments["operation"] == sub.operation
                nums = [parse_number(d.sub(o).answer) for o in sub.operands]
                assert sorted(call.arguments["operands"]) == sorted(nums)
                if sub.operation == "subtract":
                    assert call.arguments["operands"] == sorted(nums, reverse=True)
            else:
                key = tool.by_role("key")
                assert key.required and call.arguments == {key.name: sub.subject}
                assert tool.fields == [sub.field] and tool.subjects == [sub.subject]
                assert call.uses == ({key.name: sub.depends_on} if sub.depends_on else {})


def test_unique_name():
    assert unique_name("a_tool", set()) == "a_tool"
    assert unique_name("a_tool", {"a_tool", "a_tool_2"}) == "a_tool_3"
    assert len(unique_name("x" * 100, set())) <= 64
