"""Scripts for the test server: a task's timeline, and the faults it plays.

A :class:`Task` is a timeline of :class:`Step` objects (each an event of the task
stream after a delay) plus the misbehaviour of its events endpoint, per connection
attempt (:class:`Fault`) and for every connection (heartbeats, ``retry:``, line
ends, data split over lines, replays, trickling). The polling endpoints report where
the timeline has got to at the server's current (trio) time, so a test on trio's
``MockClock`` sees the same task whichever endpoint it asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..tasks import TERMINAL_EVENTS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_OUTPUT_SIZE",
    "Fault",
    "Step",
    "Task",
    "cancelled",
    "comfyui_timeline",
    "completed",
    "error",
    "failed",
    "nerfstudio_timeline",
    "progress",
    "scenario",
    "status",
]


#: The size of each file of a task whose ``outputs`` are derived from its output.
DEFAULT_OUTPUT_SIZE = 1024


@dataclass(frozen=True)
class Step:
    """One event of the task stream, ``delay`` seconds after the previous step."""

    event: str
    data: dict[str, Any]
    delay: float = 0.0

    @property
    def is_terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS


def status(value: str, *, delay: float = 0.0) -> Step:
    """A ``status`` event (pending, waiting, queued, running, provisioning, …)."""
    return Step("status", {"status": value}, delay)


def progress(
    value: float,
    *,
    delay: float = 0.0,
    step_current: int | None = None,
    step_total: int | None = None,
    current_node: str | None = None,
    stage: str | None = None,
    message: str | None = None,
) -> Step:
    """A ``progress`` event; absent fields are left out of the JSON, as the API does."""
    data: dict[str, Any] = {"progress": value}
    extra = {
        "step_current": step_current,
        "step_total": step_total,
        "current_node": current_node,
        "stage": stage,
        "message": message,
    }
    data.update({k: v for k, v in extra.items() if v is not None})
    return Step("progress", data, delay)


def completed(output: Any = None, *, delay: float = 0.0) -> Step:
    """The ``completed`` event; ``output`` is also what ``/result`` returns."""
    return Step("completed", {"status": "completed", "output": output}, delay)


def failed(message: str, *, delay: float = 0.0) -> Step:
    return Step("failed", {"status": "failed", "error": message}, delay)


def cancelled(*, delay: float = 0.0) -> Step:
    return Step("cancelled", {"status": "cancelled"}, delay)


def error(message: str, *, delay: float = 0.0) -> Step:
    """An ``error`` event: the server failed to read the task state (not terminal)."""
    return Step("error", {"message": message}, delay)


def comfyui_timeline(steps: int = 4, *, interval: float = 0.5) -> list[Step]:
    """A ComfyUI-like run: pending, queued, running, progress by sampler step, done."""
    timeline = [status("pending"), status("queued", delay=interval)]
    timeline.append(status("running", delay=interval))
    timeline += (
        progress(i / steps, delay=interval, step_current=i, step_total=steps, current_node="3")
        for i in range(1, steps + 1)
    )
    timeline.append(
        completed(
            {"9": {"images": [{"filename": "ComfyUI_00001_.png", "type": "output"}]}},
            delay=interval,
        )
    )
    return timeline


def nerfstudio_timeline(*, interval: float = 0.5) -> list[Step]:
    """A Nerfstudio-like run through its stages, with messages, to completion."""
    timeline = [status("pending"), status("running", delay=interval)]
    stages = ["download", "process_data", "train", "export", "upload"]
    for i, stage in enumerate(stages, 1):
        timeline.append(
            progress(i / len(stages), delay=interval, stage=stage, message=f"{stage} done")
        )
    timeline.append(completed({"splat": "scene.ply"}, delay=interval))
    return timeline


FaultKind = Literal[
    "drop_between",  # close the connection after `after` events, cleanly between two
    "drop_mid_event",  # close it half-way through event number `after` + 1
    "stall",  # send the headers (and `after` events), then nothing, forever
    "error_then_close",  # after `after` events, send an `error` event and close
    "status",  # answer with HTTP `code` (and `retry_after`) instead of a stream
    "no_content",  # answer 204 No Content
    "wrong_content_type",  # answer 200 with Content-Type text/plain
]


@dataclass(frozen=True)
class Fault:
    """What one connection attempt to the events endpoint suffers."""

    kind: FaultKind
    after: int = 0
    code: int = 503
    retry_after: float | None = None


@dataclass
class Task:
    """A scripted task: its timeline, and how its events endpoint misbehaves.

    Args:
        steps: The events, in order; the task ends with its first terminal step.
        faults: One entry per connection attempt to the events endpoint (attempt 0 is
            the first); ``None`` or a missing entry means a clean connection.
        heartbeat: Send a ``: heartbeat`` comment every this many seconds of silence.
        retry: Send ``retry: <ms>`` at the start of every stream.
        line_ending: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"`` for every line of the stream.
        multiline_data: Spread each event's JSON over several ``data:`` lines, as the
            API's own documentation does.
        replay: After a resume with ``Last-Event-ID``, send this many events the
            client already had (same ids) before the new ones.
        trickle: Send the stream one byte per write.
        workflow_id: Reported by the polling endpoints.
        ids: Give every event an ``id:`` line (``1``, ``2``, …) and resume after
            ``Last-Event-ID``. False: no ``id:`` lines (the API's documentation
            mentions none), and every connection starts the timeline over.
        outputs: The files of a completed task, by output name, each as
            ``(file name, size in bytes)``: ``/result`` links each one (the name
            ``""`` as ``download_url``, a "local" task; the others in
            ``download_urls``, a "cloud" task) to the server's storage, which serves
            :func:`~sseproto.testing.output_bytes` of that size. None (the default):
            derived from the ``completed`` step's output, a ComfyUI output giving
            ``"<node>.images.<i>"`` per image, any other output one ``download_url``
            named ``output``, each :data:`DEFAULT_OUTPUT_SIZE` bytes.
    """

    steps: Sequence[Step] = field(default_factory=comfyui_timeline)
    faults: Sequence[Fault | None] = ()
    heartbeat: float | None = None
    retry: int | None = None
    line_ending: str = "\n"
    multiline_data: bool = False
    replay: int = 0
    trickle: bool = False
    workflow_id: str = "wf-comfyui-demo"
    ids: bool = True
    outputs: Mapping[str, tuple[str, int]] | None = None

    def __post_init__(self) -> None:
        if self.line_ending not in ("\n", "\r\n", "\r"):
            raise ValueError(r"line_ending must be '\n', '\r\n' or '\r'")
        if not self.steps:
            raise ValueError("a task needs at least one step")
        for key, value in (self.outputs or {}).items():
            if not isinstance(key, str):
                raise ValueError(f"an output's name is a str, not {type(key).__name__}")
            if (
                not isinstance(value, tuple)
                or len(value) != 2
                or not isinstance(value[0], str)
                or not value[0]
                or isinstance(value[1], bool)
                or not isinstance(value[1], int)
                or value[1] < 0
            ):
                raise ValueError(
                    f"output {key!r} must be (file name, size in bytes), a non-empty str "
                    f"and an int >= 0, not {value!r}"
                )

    def fault(self, attempt: int) -> Fault | None:
        return self.faults[attempt] if attempt < len(self.faults) else None

    @property
    def timeline(self) -> list[tuple[float, Step]]:
        """Each step with its offset from the task's start, up to the first terminal one."""
        out: list[tuple[float, Step]] = []
        at = 0.0
        for step in self.steps:
            at += step.delay
            out.append((at, step))
            if step.is_terminal:
                break
        return out


#: The ready-made tasks of :func:`scenario` (and of ``sseproto serve --task ID=NAME``).
SCENARIOS = ("comfyui", "nerfstudio", "failed", "cancelled", "flaky", "polling", "forbidden")


def scenario(name: str, *, interval: float = 0.5) -> Task:
    """A ready-made task by name, its steps ``interval`` seconds apart.

    * ``comfyui``, ``nerfstudio``: a clean run of each kind to completion;
    * ``failed``: runs, then fails with "CUDA out of memory";
    * ``cancelled``: runs, then is cancelled;
    * ``flaky``: a ComfyUI run whose stream drops mid-event, then between two events,
      with heartbeats and a ``retry:`` of one interval (a client resumes it twice);
    * ``polling``: the events endpoint answers ``text/plain``, as a buffering proxy
      might; a client has to poll ``GET /tasks/{id}``.
    """
    running = [status("pending"), status("running", delay=interval)]
    half = progress(0.5, delay=interval, step_current=2, step_total=4, current_node="3")
    if name == "comfyui":
        return Task(steps=comfyui_timeline(interval=interval))
    if name == "nerfstudio":
        return Task(steps=nerfstudio_timeline(interval=interval), workflow_id="wf-nerfstudio-demo")
    if name == "failed":
        return Task(steps=[*running, half, failed("CUDA out of memory", delay=interval)])
    if name == "cancelled":
        return Task(steps=[*running, half, cancelled(delay=interval)])
    if name == "flaky":
        return Task(
            steps=comfyui_timeline(interval=interval),
            faults=[Fault("drop_mid_event", after=2), Fault("drop_between", after=2)],
            heartbeat=interval / 2,
            retry=max(1, int(interval * 1000)),
        )
    if name == "forbidden":  # the events endpoint refuses: a licensed feature is off
        return Task(steps=comfyui_timeline(interval=interval), faults=[Fault("status", code=403)])
    if name == "polling":
        return Task(steps=comfyui_timeline(interval=interval), faults=[Fault("wrong_content_type")])
    raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
