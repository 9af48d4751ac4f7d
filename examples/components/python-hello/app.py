"""An HTTP hello as a standard wasi:http component, in Python.

Build (componentize-py 0.25 from PyPI), from this directory:

    componentize-py -d ../../../wit -w lattice:actor/http componentize app -o hello.wasm

`GET /raise` raises, to show what a Python exception becomes: the instance
traps, the client gets a 500 naming the actor, the host serves on.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        path = request.path_with_query() or "/"
        if path.startswith("/raise"):
            raise RuntimeError("the Python handler raised on purpose")
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(b"Hello from Python!")
        OutgoingBody.finish(body, None)
