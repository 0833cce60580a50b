"""Definition errors and factory refusals: clear messages, nothing stored."""

from __future__ import annotations

import re

import pytest

from flowbaton.engine import compile_flow, factory_name, load_factory, new_flow_detail
from flowbaton.engine.errors import (
    CycleError,
    DuplicateTaskId,
    FactoryError,
    FactoryNotAllowed,
    MissingInputs,
    NotJSONError,
)
from flowbaton.engine.factory import check_allowed
from tests.engine import defs_flows as defs

M = "tests.engine.defs_flows"


def test_default_ids_are_module_qualname() -> None:
    assert defs.Plain().task_id == f"{M}.Plain"
    assert defs.one.task_id == "one"


def test_graph_orders_by_data() -> None:
    compiled = compile_flow(defs.good())
    assert compiled.preds["two"] == {"one"}
    assert compiled.preds["three"] == {"two"}


def test_duplicate_ids_name_both_places() -> None:
    with pytest.raises(DuplicateTaskId) as err:
        compile_flow(defs.duplicate())
    text = str(err.value)
    assert "'one'" in text and "dup (" in text and "dup/inner (" in text and "defs_flows.py" in text


def test_cycle_is_named() -> None:
    with pytest.raises(CycleError, match=r"one -> two -> three -> one|three -> one -> two -> three"):
        compile_flow(defs.cycle())


def test_linear_against_data_order_is_a_cycle() -> None:
    with pytest.raises(CycleError, match="two"):
        compile_flow(defs.backwards(), inputs={"x"})


def test_missing_inputs_are_named() -> None:
    with pytest.raises(MissingInputs, match="task 'two' requires 'x'"):
        compile_flow(defs.missing())
    compile_flow(defs.missing(), inputs={"x"})


@pytest.mark.parametrize(
    ("factory", "reason"),
    [
        (defs.lam, "lambda"),
        (defs.make_nested(), "inside a function"),
        (defs.make_closure(), "inside a function"),
        (defs.alias, "different object|good"),
    ],
)
def test_unsaveable_factories_are_refused(factory: object, reason: str) -> None:
    if factory is defs.alias:
        assert factory_name(factory) == f"{M}:good"  # an alias saves under its real name
        return
    with pytest.raises(FactoryError, match=reason):
        new_flow_detail(factory)  # type: ignore[arg-type]


def test_name_must_resolve_back_to_the_same_object() -> None:
    with pytest.raises(FactoryError, match="no 'missing_thing'"):
        new_flow_detail(f"{M}:missing_thing")
    with pytest.raises(FactoryError, match="cannot import module"):
        new_flow_detail("no_such_module_xyz.flows:build")
    with pytest.raises(FactoryError, match="must look like"):
        new_flow_detail("not a name")


def test_factory_must_return_a_flow() -> None:
    with pytest.raises(FactoryError, match="returned list, not a flow"):
        new_flow_detail(f"{M}:not_a_flow")
    with pytest.raises(FactoryError, match="raised ValueError: no flow today"):
        new_flow_detail(f"{M}:raises")


def test_non_json_arguments_are_refused_with_path() -> None:
    with pytest.raises(NotJSONError, match=r"kwargs\['label'\]: tuple"):
        new_flow_detail(f"{M}:with_args", kwargs={"count": 1, "label": ("a",)})
    with pytest.raises(NotJSONError, match=r"flow inputs\['when'\]: set"):
        new_flow_detail(f"{M}:good", inputs={"when": {1}})


@pytest.mark.parametrize(
    "factory", [f"{M}:Factories.from_class", f"{M}:Factories.static", f"{M}:callable_object"]
)
def test_module_level_callables_are_accepted(factory: str) -> None:
    detail = new_flow_detail(factory)
    assert detail.factory == factory and detail.name == "good"


def test_callable_given_directly_is_saved_by_name() -> None:
    assert new_flow_detail(defs.with_args, kwargs={"count": 2}).factory == f"{M}:with_args"


def test_allow_list_is_checked_before_import() -> None:
    with pytest.raises(FactoryNotAllowed, match="allowed prefixes"):
        load_factory("os:system", ["tests."])
    with pytest.raises(FactoryNotAllowed):
        load_factory("testsuite.x:y", ["tests"])
    assert load_factory(f"{M}:good", ["tests."]) is defs.good
    assert load_factory(f"{M}:good", ["tests"]) is defs.good


def test_the_refusal_names_an_allow_entry_that_would_admit_the_factory() -> None:
    """The hint works when followed: a package prefix for a module inside a
    package, the module's own name for a top-level module."""
    for name, hint in ((f"{M}:good", "tests."), ("os:system", "os")):
        with pytest.raises(FactoryNotAllowed, match=f"allow it with --allow {re.escape(hint)}$"):
            check_allowed(name, ["elsewhere."])
        check_allowed(name, [hint])


def test_multiple_provides_split_a_list() -> None:
    compiled = compile_flow(defs.pair_provider())
    assert compiled.providers == {"left": "pair", "right": "pair"}
