"""The engine: tasks, flows, factories, resume and the run loop.

It knows the backend contract and records, never a particular driver.
"""

from __future__ import annotations

from .claim import Claim
from .codec import register_codec
from .compiler import CompiledFlow, compile_flow
from .context import TaskContext, current_task
from .factory import check_allowed, factory_name, load_factory
from .gate import Gate
from .lifecycle import FLOW_ID_PATTERN, new_flow_detail, plan_flow, rebuild, run_flow
from .patterns import Flow, Graph, Linear, Unordered
from .poison import PoisonRule
from .report import FlowReport, load_report
from .resume import DECISIONS_KEY, ResumePlan, plan_resume
from .task import FunctionTask, Retry, Task, task

__all__ = [
    "DECISIONS_KEY",
    "FLOW_ID_PATTERN",
    "Claim",
    "CompiledFlow",
    "Flow",
    "FlowReport",
    "FunctionTask",
    "Gate",
    "Graph",
    "Linear",
    "PoisonRule",
    "ResumePlan",
    "Retry",
    "Task",
    "TaskContext",
    "Unordered",
    "check_allowed",
    "compile_flow",
    "current_task",
    "factory_name",
    "load_factory",
    "load_report",
    "new_flow_detail",
    "plan_flow",
    "plan_resume",
    "rebuild",
    "register_codec",
    "run_flow",
    "task",
]
