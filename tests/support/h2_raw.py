#!/usr/bin/env python3
"""Sends one HTTP/2 request exactly as given, for the hostile-input tests.

hyper (the tests' normal client) refuses to send a malformed HTTP/2 request;
this uses the `h2` package with its outbound checks and normalisation off,
so duplicate or misplaced pseudo-headers, upper-case names and raw bytes
reach Envoy as written.

Usage: h2_raw.py PORT < request.json, where request.json is
  {"headers": [["<name hex>", "<value hex>"], ...],
   "data": "<hex>" or null, "end_stream": true|false, "reset": true|false}
"reset" sends RST_STREAM (CANCEL) after the data instead of ending the stream.
Prints one JSON line: {"status": int|null, "reset_by_peer": int|null,
"goaway": int|null, "closed": bool, "body": "<text>"} ("error" too when h2
could not read the answer). Gives up after 5 s.
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events


def main() -> int:
    port = int(sys.argv[1])
    req = json.load(sys.stdin)
    headers = [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in req["headers"]]
    data = bytes.fromhex(req["data"]) if req.get("data") is not None else None
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        header_encoding=None,
    )
    conn = h2.connection.H2Connection(config=config)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    only_headers = data is None and not req.get("reset")
    conn.send_headers(sid, headers, end_stream=only_headers and req.get("end_stream", True))
    if data is not None:
        end = req.get("end_stream", True) and not req.get("reset")
        size = conn.max_outbound_frame_size
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for i, chunk in enumerate(chunks):
            conn.send_data(sid, chunk, end_stream=end and i == len(chunks) - 1)
    if req.get("reset"):
        conn.reset_stream(sid)
    sock.sendall(conn.data_to_send())
    out = {"status": None, "reset_by_peer": None, "goaway": None, "closed": False, "body": ""}
    body = b""
    deadline = time.monotonic() + 5
    done = bool(req.get("reset"))
    while time.monotonic() < deadline:
        try:
            sock.settimeout(0.5 if done else max(0.1, deadline - time.monotonic()))
            chunk = sock.recv(65536)
        except socket.timeout:
            if done:
                break
            continue
        except OSError:
            break
        if not chunk:
            out["closed"] = True
            break
        try:
            events = conn.receive_data(chunk)
        except Exception as e:  # a peer answer h2 itself finds invalid
            out["error"] = f"{type(e).__name__}: {e}"
            break
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                for n, v in event.headers:
                    if n == b":status":
                        out["status"] = int(v)
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                done = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                out["reset_by_peer"] = int(event.error_code)
                done = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                out["goaway"] = int(event.error_code)
                done = True
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except OSError:
                break
        if done and not req.get("reset"):
            break
    out["body"] = body.decode("utf-8", "replace")
    print(json.dumps(out))
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
