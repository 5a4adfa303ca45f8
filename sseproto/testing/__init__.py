"""sseproto.testing: a real HTTPS server that plays the Cyberun task API, with faults.

::

    flaky = Task(faults=[Fault("drop_between", after=2)])
    async with sseproto.testing.serve({"t-1": flaky}) as srv:
        ...  # srv.base_url, srv.token, srv.ssl_context, srv.ca_path, srv.requests

It runs in the caller's trio task tree on 127.0.0.1 and stops when the block ends.
From asyncio or blocking code, ``with serve_in_thread(...) as srv`` runs the same
server on its own trio loop in a background thread.
Needs trustme (``pip install 'sseproto[testing]'``).

Where the real API may differ from its documentation, the server plays the
documentation by default and the other behaviour on demand: ``serve(unknown="404")``
(unknown task ids are 404, not a default timeline), ``serve(result_conflict=True)``
(the result of an unfinished task is a 409), ``Task(ids=False)`` (a stream without
``id:`` lines). It also plays the storage behind presigned links: ``POST
/files/presign`` then a ``PUT`` (``srv.uploads``), and the download links of a
completed task's result (``Task(outputs=...)``, :func:`output_bytes`, ``Range``,
expiry after ``serve(link_seconds=...)``).
"""

from ._script import (
    DEFAULT_OUTPUT_SIZE,
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
from ._server import RecordedRequest, TestServer, UnknownTasks, output_bytes, serve
from ._thread import serve_in_thread

__all__ = [
    "DEFAULT_OUTPUT_SIZE",
    "Fault",
    "RecordedRequest",
    "Step",
    "Task",
    "TestServer",
    "UnknownTasks",
    "cancelled",
    "comfyui_timeline",
    "completed",
    "error",
    "failed",
    "nerfstudio_timeline",
    "output_bytes",
    "progress",
    "scenario",
    "serve",
    "serve_in_thread",
    "status",
]
