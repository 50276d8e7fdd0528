"""Helpers shared by plugins: a stoppable HTTP server for serve()."""

import threading
from http.server import ThreadingHTTPServer


class StoppableHttpServer:
    """Runs an http.server on the calling (serve) thread until stop().

    stop() may come from any thread, before or during run(): run() then
    returns promptly either way.
    """

    def __init__(self):
        self._stop = threading.Event()
        self._server = None
        self.port = None

    def run(self, addr, port, handler_cls, on_bound=None):
        server = ThreadingHTTPServer((addr, int(port)), handler_cls)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        if on_bound is not None:
            on_bound(self.port)
        if self._stop.is_set():
            server.server_close()
            return
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()

    def wait(self):
        """Blocks until stop() (for a serve() with nothing to serve)."""
        self._stop.wait()

    def stop(self):
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()


def reply(handler, code, content_type, body):
    """Sends a complete response from a BaseHTTPRequestHandler."""
    handler.send_response(code)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
