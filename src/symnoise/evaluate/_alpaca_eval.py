"""Import the alpaca_eval package the way this toolkit needs it.

alpaca_eval 0.6 imports ``pkg_resources`` (for two version look-ups), which setuptools
removed in version 82; when it is absent, a stand-in with those two functions
(``parse_version`` from ``packaging``, ``get_distribution`` from ``importlib.metadata``) is
registered first. alpaca_eval also sets the root logger to INFO on import; the level is
put back.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
import types
from typing import Any

from .judge_types import JudgeError

__all__ = ["load_alpaca_eval"]


def _pkg_resources_stand_in() -> types.ModuleType:
    from packaging.version import parse

    module = types.ModuleType("pkg_resources")
    module.parse_version = parse  # type: ignore[attr-defined]
    module.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
        version=importlib.metadata.version(name))
    return module


def load_alpaca_eval() -> Any:
    """The imported ``alpaca_eval`` package (with ``annotators``, ``metrics``, ``utils``)."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        sys.modules["pkg_resources"] = _pkg_resources_stand_in()
    root = logging.getLogger()
    level = root.level
    try:
        import alpaca_eval
        import alpaca_eval.annotators
        import alpaca_eval.metrics
    except ImportError as exc:
        raise JudgeError("AlpacaEval's annotators and metrics need the alpaca-eval package: "
                         "pip install 'symnoise[judge]'") from exc
    finally:
        root.setLevel(level)
    return alpaca_eval
