#!/usr/bin/env python3
"""Real websocket and gRPC peers for the streaming tests (tests/e2e/streams.rs).

Servers (run through tether.py; one JSON line per event on stdout):
  stream_peers.py ws-server PORT
      websocket echo server (the `websockets` package); logs
      {"event": "ws_open", "path": ...} for every accepted handshake.
  stream_peers.py grpc-server PORT MARKER_DIR
      gRPC server (`grpcio`, raw bytes, no protobuf) with three methods under
      any service name: Unary (echo), Collect (client streaming: answers the
      number of messages; on the first message it creates MARKER_DIR/<id>,
      where the first message is b"first:<id>"), Chat (bidi: echoes each
      message). Logs {"event": "grpc_call", "path": ...} per call and
      {"event": "unary_message", "hex": ...} per unary message delivered.

Clients (one JSON request on stdin, one JSON result on stdout):
  stream_peers.py ws-client
      {"url", "headers": [[name, value]...], "messages": [...]} ->
      {"status": 101, "echoes": [...]} or {"status": N, "body": "..."}
  stream_peers.py grpc-client
      {"target", "method", "kind": "unary"|"collect"|"chat",
       "metadata": [[name, value]...], "messages": [hex...],
       "marker_dir", "id"} ->
      {"code": "OK"|<grpc status name>, "details", "replies": [hex...],
       "first_seen_before_end": bool}
Every wait is bounded (10-15 s).
"""

import asyncio
import json
import os
import queue
import sys
import time
from concurrent import futures

WAIT = 10.0


def emit(obj):
    print(json.dumps(obj), flush=True)


# ---- websockets ---------------------------------------------------------


def ws_server(port):
    from websockets.asyncio.server import serve

    async def handler(ws):
        emit({"event": "ws_open", "path": ws.request.path})
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(handler, "127.0.0.1", port, max_size=None) as server:
            emit({"event": "listening", "port": port})
            await server.serve_forever()

    asyncio.run(main())


def ws_client(req):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    async def main():
        headers = [(n, v) for n, v in req["headers"]]
        try:
            async with connect(
                req["url"],
                additional_headers=headers,
                open_timeout=WAIT,
                proxy=None,
                max_size=None,
            ) as ws:
                echoes = []
                for message in req["messages"]:
                    await ws.send(message)
                    echoes.append(await asyncio.wait_for(ws.recv(), WAIT))
                return {"status": 101, "echoes": echoes}
        except InvalidStatus as e:
            body = e.response.body or b""
            return {"status": e.response.status_code, "body": body.decode(errors="replace")}
        except (ConnectionClosed, OSError, asyncio.TimeoutError) as e:
            return {"status": None, "error": repr(e)}

    emit(asyncio.run(main()))


# ---- gRPC ---------------------------------------------------------------


def grpc_server(port, marker_dir):
    import grpc

    def unary(request, context):
        emit({"event": "unary_message", "hex": request.hex()})
        return request

    def collect(requests, context):
        n = 0
        for message in requests:
            n += 1
            if n == 1 and message.startswith(b"first:"):
                name = message[len(b"first:"):].decode()
                with open(os.path.join(marker_dir, name), "w"):
                    pass
        return str(n).encode()

    def chat(requests, context):
        for message in requests:
            yield message

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            emit({"event": "grpc_call", "path": details.method})
            name = details.method.rsplit("/", 1)[-1]
            if name == "Unary":
                return grpc.unary_unary_rpc_method_handler(unary)
            if name == "Collect":
                return grpc.stream_unary_rpc_method_handler(collect)
            if name == "Chat":
                return grpc.stream_stream_rpc_method_handler(chat)
            return None

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((Handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    emit({"event": "listening", "port": port})
    server.wait_for_termination()


def grpc_client(req):
    import grpc

    metadata = [(n, v) for n, v in req["metadata"]]
    messages = [bytes.fromhex(m) for m in req["messages"]]
    result = {"code": "OK", "details": "", "replies": [], "first_seen_before_end": None}
    # No proxy from the environment: the target is a loopback Envoy.
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(req["target"], options=options) as channel:
        try:
            if req["kind"] == "unary":
                call = channel.unary_unary(req["method"])
                result["replies"].append(call(messages[0], metadata=metadata, timeout=15).hex())
            elif req["kind"] == "collect":
                marker = os.path.join(req["marker_dir"], req["id"])

                def gen():
                    yield messages[0]
                    # The rest waits until the server has the first message.
                    deadline = time.monotonic() + WAIT
                    while not os.path.exists(marker) and time.monotonic() < deadline:
                        time.sleep(0.02)
                    result["first_seen_before_end"] = os.path.exists(marker)
                    for m in messages[1:]:
                        yield m

                call = channel.stream_unary(req["method"])
                result["replies"].append(call(gen(), metadata=metadata, timeout=15).hex())
            elif req["kind"] == "chat":
                echoes = queue.Queue()

                def gen():
                    for i, m in enumerate(messages):
                        yield m
                        # Next message only once this one came back.
                        try:
                            echoes.get(timeout=WAIT)
                        except queue.Empty:
                            result["first_seen_before_end"] = False
                            return
                    result["first_seen_before_end"] = True

                call = channel.stream_stream(req["method"])
                for reply in call(gen(), metadata=metadata, timeout=15):
                    result["replies"].append(reply.hex())
                    echoes.put(reply)
            else:
                raise SystemExit(f"unknown kind {req['kind']}")
        except grpc.RpcError as e:
            result["code"] = e.code().name
            result["details"] = e.details() or ""
    emit(result)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd = sys.argv[1]
    if cmd == "ws-server":
        ws_server(int(sys.argv[2]))
    elif cmd == "grpc-server":
        grpc_server(int(sys.argv[2]), sys.argv[3])
    elif cmd == "ws-client":
        ws_client(json.load(sys.stdin))
    elif cmd == "grpc-client":
        grpc_client(json.load(sys.stdin))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
