"""A reverse proxy on 127.0.0.1 in front of an HTTP server that goes down at a chosen request: an outage
cut at an exact point of a client's conversation (between two alias writes, say), which stopping the
server from the test cannot time.

`HttpCut(target, cut_at)` forwards every request until `cut_at(method, path, count)` says yes, where
`count` is how many requests with that method and path came before; from that request on it answers none
(the connection is closed unanswered, as by a server that died). The server behind keeps its state.
"""
from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


class HttpCut:
    def __init__(self, target_url: str, cut_at: Callable[[str, str, int], bool]):
        target = urlsplit(target_url)
        self.target = (target.hostname, target.port)
        self.cut_at, self.down = cut_at, False
        self.seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _goes_through(self, method: str, path: str) -> bool:
        with self._lock:
            key = (method, path.split("?", 1)[0])
            if not self.down and self.cut_at(*key, self.seen[key]):
                self.down = True
            self.seen[key] += 1
            return not self.down

    def _handler(self):
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not proxy._goes_through(self.command, self.path):
                    self.close_connection = True
                    return  # unanswered
                upstream = http.client.HTTPConnection(*proxy.target, timeout=300)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    reply = upstream.getresponse()
                    data = reply.read()
                finally:
                    upstream.close()
                self.send_response(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Forward
