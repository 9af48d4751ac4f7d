"""A key-value counter as a standard wasi:http + wasi:keyvalue component, in
Python: `GET /PATH` increments the counter PATH in the default bucket (the
actor's default lattice:keyvalue link) and answers {"count": N}.

Build (componentize-py 0.25 from PyPI), from this directory, then give it
claims for the contract:

    componentize-py -d ../../../wit -w lattice:actor/http-keyvalue componentize app -o counter.wasm
    lattice claims put counter.wasm --name counter --contract lattice:keyvalue
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, store
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam


def respond(response_out, status, content_type, text):
    response = OutgoingResponse(Fields.from_list([("content-type", content_type)]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        stream.blocking_write_and_flush(text.encode())
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        path = (request.path_with_query() or "/").split("?")[0]
        key = path.lstrip("/") or "root"
        try:
            with store.open("") as bucket:
                count = atomics.increment(bucket, key, 1)
        except Err as e:
            respond(response_out, 500, b"text/plain", f"key-value error: {e.value}\n")
            return
        respond(response_out, 200, b"application/json", f'{{"count":{count}}}')
