"""The search space of a sweep: dotted config paths with ranges or choices, checked up front.

A space file is JSON (or YAML when it ends in ``.yaml``/``.yml``)::

    {"optimizer.lr": {"low": 1e-3, "high": 1e-2, "log": true},
     "model.dropout": {"choices": [0, 0.1]},
     "epochs": {"low": 1, "high": 3, "step": 1},
     "objective": "test/accuracy", "direction": "maximize", "n_trials": 20}

Every path is a field of the training config (as with ``--set``); ``objective``,
``direction`` and ``n_trials`` are settings (the paths may also sit under ``"space"``).
Each path and every value it may take is checked against the config with ``Node.fork``
before any trial runs, so a typo or a value of the wrong type fails in one line.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from legoml.nn import ConfigError
from legoml_mnist._files import read_small_file
from legoml_mnist.errors import AppError
from legoml_mnist.trainer import TrainerNode

__all__ = ["Param", "SearchSpace", "TrialLike", "load_search_space", "parse_search_space"]

MAX_SPACE_BYTES = 1 << 20
SETTINGS = ("objective", "direction", "n_trials")
_RANGE_KEYS = ("low", "high", "step", "log")
#: Fields the sweep sets itself for every trial.
_RESERVED = ("run_name", "runs_root", "progress")
_PRIMITIVE = (str, int, float, bool, type(None))


class TrialLike(Protocol):
    """The part of an Optuna trial a space samples with (``optuna.Trial`` meets it)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Param:
    """One searched config field: a float or int range, or a list of choices.

    Choices that are not plain scalars (lists, node dicts) are handed to Optuna as JSON text,
    which is what the study then records as the trial's parameter."""

    path: str
    kind: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def as_json(self) -> bool:
        """True when the choices go through Optuna as JSON text."""
        return any(not isinstance(c, _PRIMITIVE) for c in self.choices)

    def suggest(self, trial: TrialLike) -> Any:
        """The trial's value for this field (decoded back from JSON for structured choices)."""
        if self.kind == "choice":
            if self.as_json:
                return json.loads(trial.suggest_categorical(self.path, [json.dumps(c) for c in self.choices]))
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def decode(self, value: Any) -> Any:
        """A value as Optuna stored it -> the config value."""
        return json.loads(value) if self.kind == "choice" and self.as_json else value

    def describe(self) -> dict[str, Any]:
        """The entry as written in a space file (for the study's record)."""
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        entry: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            entry["step"] = self.step
        if self.log:
            entry["log"] = True
        return entry


@dataclass(frozen=True)
class SearchSpace:
    """The searched fields plus the settings a space file may carry (``None``: not given)."""

    params: tuple[Param, ...]
    objective: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    n_trials: int | None = None

    def sample(self, trial: TrialLike) -> dict[str, Any]:
        """``{path: config value}`` for one trial."""
        return {p.path: p.suggest(trial) for p in self.params}

    def apply(self, node: TrainerNode, values: Mapping[str, Any]) -> TrainerNode:
        """``node`` with the trial's values set (validated, as ``--set`` is)."""
        return node.fork(**dict(values)) if values else node

    def describe(self) -> dict[str, Any]:
        return {p.path: p.describe() for p in self.params}


def load_search_space(path: Path, base: TrainerNode) -> SearchSpace:
    """Read and check a space file against ``base``; every problem is one ``AppError`` line."""
    raw = read_small_file(
        path,
        MAX_SPACE_BYTES,
        f"search space file {path}",
        missing="does not exist; check the path",
        too_large=f"is over {MAX_SPACE_BYTES // 1024} KiB; a space is a few lines",
    )
    text = raw.decode("utf-8", errors="replace")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _yaml(text, path)
    else:
        try:
            data = json.loads(text)
        except ValueError as err:
            raise AppError(f"search space {path}: not valid JSON ({err}); YAML files end in .yaml") from None
        except RecursionError:
            raise AppError(f"search space {path}: nested too deeply") from None
    return parse_search_space(data, base, where=str(path))


def _yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise AppError(
            f"reading {path} needs PyYAML: pip install 'legoml-mnist[sweep]' (or write the space as JSON)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AppError(f"search space {path}: not valid YAML ({first})") from None


def parse_search_space(data: object, base: TrainerNode, where: str = "search space") -> SearchSpace:
    """Check a parsed space (a mapping) against ``base`` and return it."""

    def fail(message: str) -> AppError:
        return AppError(f"search space {where}: {message}")

    if not isinstance(data, Mapping):
        raise fail('expected an object of {"dotted.path": {"low": .., "high": ..} or {"choices": [..]}}')
    entries = dict(data)
    settings = {key: entries.pop(key) for key in SETTINGS if key in entries}
    if "space" in entries:
        nested = entries.pop("space")
        if not isinstance(nested, Mapping):
            raise fail("'space' must be an object of dotted paths")
        entries = {**entries, **nested}
    if not entries:
        raise fail("no parameters to search; add e.g. {\"optimizer.lr\": {\"low\": 1e-4, \"high\": 1e-2, \"log\": true}}")
    params = tuple(_param(str(path), spec, base, fail) for path, spec in entries.items())
    objective = settings.get("objective")
    if objective is not None and (not isinstance(objective, str) or not objective.strip()):
        raise fail(f"objective must be a metric name such as 'test/accuracy', got {objective!r}")
    direction = settings.get("direction")
    if direction is not None and direction not in ("maximize", "minimize"):
        raise fail(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    n_trials = settings.get("n_trials")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise fail(f"n_trials must be an int >= 1, got {n_trials!r}")
    return SearchSpace(params, objective.strip() if objective else None, direction, n_trials)


def _param(path: str, spec: object, base: TrainerNode, fail: Any) -> Param:
    head = path.split(".")[0].split("[")[0].strip()
    if head in _RESERVED:
        raise fail(f"{path}: set by the sweep for every trial; search other fields")
    if not isinstance(spec, Mapping):
        raise fail(f'{path}: expected {{"low": .., "high": ..}} or {{"choices": [..]}}, got {spec!r}'[:300])
    unknown = [key for key in spec if key not in (*_RANGE_KEYS, "choices")]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), [*_RANGE_KEYS, "choices"], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise fail(f"{path}: unknown key {unknown[0]!r}{hint}; use low/high/step/log or choices")
    if "choices" in spec:
        return _choices(path, spec, base, fail)
    return _range(path, spec, base, fail)


def _choices(path: str, spec: Mapping[str, Any], base: TrainerNode, fail: Any) -> Param:
    if any(key in spec for key in _RANGE_KEYS):
        raise fail(f"{path}: give either choices or low/high, not both")
    choices = spec["choices"]
    if not isinstance(choices, list):
        raise fail(f"{path}: choices must be a list, got {type(choices).__name__}")
    if not choices:
        raise fail(f"{path}: choices is empty; give at least one value")
    for choice in choices:
        _check_value(path, choice, base, fail)
    texts = [json.dumps(c, sort_keys=True) for c in choices]
    if len(set(texts)) != len(texts):
        raise fail(f"{path}: choices repeat a value; list each once")
    return Param(path, "choice", choices=tuple(choices))


def _range(path: str, spec: Mapping[str, Any], base: TrainerNode, fail: Any) -> Param:
    missing = [key for key in ("low", "high") if key not in spec]
    if missing:
        raise fail(f"{path}: a range needs low and high (missing {', '.join(missing)}), or use choices")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is None and name == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(f"{path}: {name} must be a finite number, got {value!r}")
    if not isinstance(log, bool):
        raise fail(f"{path}: log must be true or false, got {log!r}")
    if low > high:
        raise fail(f"{path}: low {low!r} is above high {high!r}; swap them")
    if step is not None and step <= 0:
        raise fail(f"{path}: step must be > 0, got {step!r}")
    if log and step is not None:
        raise fail(f"{path}: a log range cannot have a step; drop one of them")
    if log and low <= 0:
        raise fail(f"{path}: a log range needs low > 0, got {low!r}")
    integral = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    kind: Literal["float", "int"] = "int" if integral else "float"
    probes = [low, high] if integral else [float(low), float(high), float(low) + (float(high) - float(low)) * 0.37]
    for probe in probes:
        _check_value(path, probe, base, fail)
    return Param(path, kind, low=low, high=high, step=step, log=log)


def _check_value(path: str, value: Any, base: TrainerNode, fail: Any) -> None:
    """The config must take ``value`` at ``path``: unknown paths and wrong types fail here."""
    try:
        base.fork(**{path: value})
    except ConfigError as err:
        raise fail(str(err)) from None
