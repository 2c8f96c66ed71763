"""Where the record, the commit and the model catalogue sit among the modules: each imports
only what lies below it (imports inside functions count)."""

from __future__ import annotations

from tests.helpers import import_graph, reachable


def test_the_model_catalogue_and_the_engines_are_no_circle():
    graph = import_graph()
    assert not any(name.startswith("hushdrop.pipeline.engines") for name in reachable(graph, "hushdrop.pipeline.models"))
    assert "hushdrop.pipeline.models" in reachable(graph, "hushdrop.pipeline.engines")  # the engines report through it


def test_the_record_outputs_and_retention_never_climb_back_to_the_service():
    graph = import_graph()
    for module in ("job", "outputs", "retention", "script"):
        above = sorted(name for name in reachable(graph, f"hushdrop.pipeline.{module}") if name.startswith("hushdrop.pipeline.watch"))
        assert above == [], f"pipeline.{module} reaches {above}"


def test_the_chinese_script_is_a_profile_setting_not_a_part_of_grammar():
    graph = import_graph()
    assert "hushdrop.pipeline.script" in graph["hushdrop.stages.grammar"]  # grammar's glossary reads either script
    assert not any(name.startswith("hushdrop.stages") for name in reachable(graph, "hushdrop.pipeline.script"))
    # one place applies it: the end of Processor.run_chain (grammar only reads it for the glossary)
    users = {name for name, imported in graph.items() if "hushdrop.pipeline.script" in imported}
    assert users == {"hushdrop.pipeline.process", "hushdrop.stages.grammar"}
