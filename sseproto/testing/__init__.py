"""sseproto.testing: a real HTTPS server that plays the Cyberun task API, with faults.

::

    flaky = Task(faults=[Fault("drop_between", after=2)])
    async with sseproto.testing.serve({"t-1": flaky}) as srv:
        ...  # srv.base_url, srv.token, srv.ssl_context, srv.ca_path, srv.requests

It runs in the caller's trio task tree on 127.0.0.1 and stops when the block ends.
From asyncio or blocking code, ``with serve_in_thread(...) as srv`` runs the same
server on its own trio loop in a background thread.
Needs trustme (``pip install 'sseproto[testing]'``).
"""

from ._script import (
    Fault,
    Step,
    Task,
    cancelled,
    comfyui_timeline,
    completed,
    error,
    failed,
    nerfstudio_timeline,
    progress,
    scenario,
    status,
)
from ._server import RecordedRequest, TestServer, serve
from ._thread import serve_in_thread

__all__ = [
    "Fault",
    "RecordedRequest",
    "Step",
    "Task",
    "TestServer",
    "cancelled",
    "comfyui_timeline",
    "completed",
    "error",
    "failed",
    "nerfstudio_timeline",
    "progress",
    "scenario",
    "serve",
    "serve_in_thread",
    "status",
]
