"""The AWS IoT data plane emulator (moto) as a process of its own, for the sink tests.

    python tests/vei/moto_iot_server.py      # prints {"endpoint": "http://127.0.0.1:P", "published": "http://..."}

moto's server answers the gateway's boto3 calls; a second small HTTP server returns what was
published (`GET /` -> [[topic, payload], ...]), which moto's own API does not expose. In a process of
its own the emulator never waits for the gateway's GIL, so no publish is slow enough to be retried,
and the tests can require exactly one copy per result.
"""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends
from moto.server import ThreadedMotoServer


class Published(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        rows = [[topic, payload.decode() if isinstance(payload, bytes) else payload]
                for region in iotdata_backends[DEFAULT_ACCOUNT_ID].values()
                for topic, payload in region.published_payloads]
        body = json.dumps(rows).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    published = ThreadingHTTPServer(("127.0.0.1", 0), Published)
    threading.Thread(target=published.serve_forever, daemon=True).start()
    print(json.dumps({"endpoint": f"http://{host}:{port}",
                      "published": f"http://127.0.0.1:{published.server_address[1]}/"}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    published.shutdown()
    moto.stop()


if __name__ == "__main__":
    main()
