"""MetricsCallback: feed step outputs to update/compute/reset metrics, one value per epoch.

Results are named by the rule of ``legoml.metrics.MetricCollection`` (reproduced here, since
core imports no other legoml package; tests/metrics checks that the two agree): a mapping
names each metric by its key, a sequence by :func:`metric_name`; a result is stored as
``<prefix><name>``, a dict result as ``<prefix><name>/<key>`` (one more ``/<key>`` per
nested level).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import structlog
import torch
import torch.distributed as dist
from torch import Tensor

from legoml.core._callback_base import Callback, Priority
from legoml.core._utils import flatten_scalars, snake_case
from legoml.core.distributed import get_world_size
from legoml.core.errors import CallbackError
from legoml.core.protocols import MetricLike

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["MetricsCallback", "metric_name"]

_log = structlog.get_logger(__name__)


_CLASS_PREFIXES = ("MultiClass", "Multiclass", "Binary")


def metric_name(metric: object) -> str:
    """A metric's ``name`` attribute (a non-empty string), else its class name in snake_case
    without a ``MultiClass``/``Binary`` prefix (``MultiClassAccuracy`` -> ``accuracy``), as
    ``legoml.metrics.MetricCollection`` names a sequence of metrics."""
    name = getattr(metric, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(metric).__name__
    for prefix in _CLASS_PREFIXES:
        if cls.startswith(prefix) and len(cls) > len(prefix):
            cls = cls[len(prefix) :]
            break
    return snake_case(cls)


def _check_metric(name: str, metric: object) -> None:
    missing = [m for m in ("update", "compute", "reset") if not callable(getattr(metric, m, None))]
    if missing:
        raise CallbackError(
            f"metric {name!r} ({type(metric).__name__}) lacks {', '.join(missing)}(); "
            "metrics need update(predictions, targets), compute() and reset()"
        )


class _Default(enum.Enum):
    """The ``loss=`` default: a fresh sample-weighted mean of the step losses."""

    MEAN_LOSS = "mean loss"


class _MeanLoss:
    """Sample-weighted running mean of the step losses: core's stand-in for
    ``legoml.metrics.MeanLoss``, so ``train/loss`` is reported without that package.

    A scalar batch loss counts ``len(targets)`` times, per-sample (1-d) losses once each; the
    sum stays a float64 tensor on the loss's device (no sync per step).
    """

    name = "loss"

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.count = 0
        self._reduced = False

    def reset(self) -> None:
        self.total, self.count, self._reduced = None, 0, False

    def update(self, loss: Tensor, targets: Any = None) -> None:
        if loss.ndim:
            loss, weight = loss.sum(), loss.numel()
        else:
            shape = getattr(targets, "shape", None)
            if shape is not None:
                weight = int(shape[0]) if len(shape) else 1
            else:
                weight = len(targets) if hasattr(targets, "__len__") else 1
        total = self.total
        if total is None:
            self.total = loss.double() * weight
        else:  # one kernel a step; the sum is float64 (torch promotes before scaling)
            self.total = torch.add(total, loss.to(total.device), alpha=weight)
        self.count += weight
        self._reduced = False

    def compute(self) -> float:
        if self.total is None or self.count == 0:
            return float("nan")
        return float(self.total) / self.count

    def all_reduce(self) -> None:
        """Sum (total, count) over the ranks, once per epoch; every rank must call it."""
        if not (dist.is_available() and dist.is_initialized()) or self._reduced:
            return
        device = self.total.device if self.total is not None else torch.device("cpu")
        if dist.get_backend() == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        total = 0.0 if self.total is None else self.total.to(device)
        both = torch.stack(
            [
                torch.as_tensor(total, dtype=torch.float64, device=device),
                torch.tensor(float(self.count), dtype=torch.float64, device=device),
            ]
        )
        dist.all_reduce(both)
        self.total, self.count, self._reduced = both[0], int(both[1]), True

    def state_dict(self) -> dict[str, Any]:
        total = torch.zeros((), dtype=torch.float64) if self.total is None else self.total
        return {"total": total.detach().cpu().clone(), "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total = torch.as_tensor(state["total"], dtype=torch.float64)
        self.count = int(state["count"])
        self._reduced = False


class MetricsCallback(Callback):
    """Reset at EPOCH_START, update at every STEP_END, compute at EPOCH_END.

    Results land in ``engine.state.metrics[prefix + name]`` (dict results as
    ``prefix + name/key``; the loss metric as ``prefix + "loss"``), the names
    ``MetricCollection(metrics, prefix).compute()`` gives; non-scalar results stay in
    :attr:`results` (keyed by ``name``). By default ``loss`` is a sample-weighted mean of the step losses
    (no entry when every step's loss is ``None``); ``loss=None`` turns it off, a metric
    replaces it, and a metric of ``metrics`` named ``loss`` takes its place. Under DDP each metric's ``all_reduce()`` runs before ``compute()``.
    With ``running_every=N`` the same keys also hold running values (this rank's, so far in
    the epoch) every N steps, for progress bars of long or fractional epochs.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> class Count:
        ...     def reset(self): self.n = 0
        ...     def update(self, predictions, targets): self.n += len(targets)
        ...     def compute(self): return self.n
        >>> step = lambda e, b, c: {"loss": None, "predictions": b, "targets": b}
        >>> engine = Engine(step, Context(torch.nn.Identity()), [MetricsCallback({"seen": Count()})])
        >>> engine.loop([torch.zeros(4)] * 3).metrics
        {'train/seen': 12.0}
    """

    priority = Priority.METRICS

    def __init__(
        self,
        metrics: Mapping[str, MetricLike] | Sequence[MetricLike] = (),
        loss: MetricLike | None | Literal[_Default.MEAN_LOSS] = _Default.MEAN_LOSS,
        prefix: str = "train/",
        running_every: int | None = None,
    ) -> None:
        if running_every is not None and (
            isinstance(running_every, bool)
            or not isinstance(running_every, int)
            or running_every < 1
        ):
            raise CallbackError(f"running_every must be None or an int >= 1, got {running_every!r}")
        if isinstance(metrics, Mapping):
            named = {str(name): metric for name, metric in metrics.items()}
        else:
            named = {}
            for metric in metrics:
                name = metric_name(metric)
                if name in named:
                    raise CallbackError(
                        f"two metrics are both named {name!r}; pass a dict {{name: metric}}"
                    )
                named[name] = metric
        self._auto_loss = loss is _Default.MEAN_LOSS
        if loss is _Default.MEAN_LOSS:
            loss = None if "loss" in named else _MeanLoss()
        elif loss is not None and "loss" in named:
            raise CallbackError("metric name 'loss' is reserved for the loss= metric")
        for name, metric in named.items():
            _check_metric(name, metric)
        if loss is not None:
            _check_metric("loss", loss)
        self.metrics: dict[str, MetricLike] = named
        self.loss = loss
        self.prefix = prefix
        self.running_every = running_every
        self.results: dict[str, Any] = {}
        self._metric_list = tuple(named.values())
        self._updates = 0
        self._warned_reduce = False
        self._restored: set[str] = set()  # metrics whose mid-epoch state came from a checkpoint

    def _all(self) -> list[tuple[str, MetricLike]]:
        items = list(self.metrics.items())
        if self.loss is not None:
            items.append(("loss", self.loss))
        return items

    def _unused(self, metric: object) -> bool:
        """The default loss mean when no step had a loss: it reports nothing."""
        return self._auto_loss and isinstance(metric, _MeanLoss) and metric.count == 0

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """The epoch's accumulated metric states, so a run resumed mid-epoch reports the
        same epoch metrics as an uninterrupted one. Metrics without ``state_dict()`` (and
        every metric under DDP, where ranks hold different counts) are stored as ``None``
        and measure only the resumed part of that epoch."""
        distributed = get_world_size() > 1
        states: dict[str, Any] = {}
        for name, metric in self._all():
            save = getattr(metric, "state_dict", None)
            can_load = callable(getattr(metric, "load_state_dict", None))
            states[name] = save() if callable(save) and can_load and not distributed else None
        return {"updates": self._updates, "metrics": states}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("metrics", {})
        self._restored = set()
        for name, metric in self._all():
            value = saved.get(name) if isinstance(saved, Mapping) else None
            if value is not None:
                metric.load_state_dict(value)  # type: ignore[attr-defined]
                self._restored.add(name)
        self._updates = int(state.get("updates", 0))

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        resumed = self._restored if engine.state.step > 0 else set()  # a resumed epoch
        self._restored = set()
        for name, metric in self._all():
            if name not in resumed:
                metric.reset()
        if not resumed:
            self._updates = 0

    def on_step_end(self, engine: Engine, context: Context) -> None:
        output = engine.state.output
        try:
            targets = output.targets
            predictions = output.predictions if self._metric_list else targets
        except AttributeError:
            raise CallbackError(
                f"MetricsCallback needs step outputs with predictions and targets, got "
                f"{type(output).__name__}; return a SupervisedStepOutput or such a dict"
            ) from None
        for metric in self._metric_list:
            metric.update(predictions, targets)
        loss_metric = self.loss
        if loss_metric is not None:
            loss = getattr(output, "loss", None)
            if loss is not None:
                loss_metric.update(loss.detach() if loss.requires_grad else loss, targets)
        self._updates = updates = self._updates + 1
        if self.running_every is not None and updates % self.running_every == 0:
            for name, metric in self._all():
                if not self._unused(metric):
                    self._publish(name, metric.compute(), engine.state.metrics)

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        if self._updates == 0:  # resumed exactly at the end of an epoch: nothing measured
            return
        distributed = get_world_size() > 1
        metrics = engine.state.metrics
        self.results = {}
        for name, metric in self._all():
            if distributed:
                reduce = getattr(metric, "all_reduce", None)
                if callable(reduce):
                    reduce()
                elif not self._warned_reduce:
                    self._warned_reduce = True
                    _log.warning("metric_not_reduced", metric=name, reason="no all_reduce()")
            if self._unused(metric):
                continue
            value = metric.compute()
            self.results[name] = value
            self._publish(name, value, metrics)

    def _publish(self, name: str, value: Any, into: dict[str, float]) -> None:
        """Write ``value``'s scalars under ``<prefix><name>`` (dicts as ``/<key>``)."""
        flatten_scalars(f"{self.prefix}{name}", value, into)
