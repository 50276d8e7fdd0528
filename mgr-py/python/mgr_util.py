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


# ---- text helpers of Ceph's mgr_util that stock modules call ------------
# (status, crash, progress, pg_autoscaler import these by name.)

BLACK, RED, GREEN, YELLOW, BLUE, MAGENTA, CYAN, GRAY = range(8)
RESET_SEQ = "\033[0m"
COLOR_SEQ = "\033[1;%dm"
COLOR_DARK_SEQ = "\033[0;%dm"
BOLD_SEQ = "\033[1m"
UNDERLINE_SEQ = "\033[4m"


def colorize(msg, color, dark=False):
    """``msg`` wrapped in the ANSI colour ``color`` (one of BLACK..GRAY)."""
    seq = COLOR_DARK_SEQ if dark else COLOR_SEQ
    return "%s%s%s" % (seq % (30 + color), msg, RESET_SEQ)


def bold(msg):
    return "%s%s%s" % (BOLD_SEQ, msg, RESET_SEQ)


_UNIT_SUFFIXES = " kMGTPE"


def format_units(n, width, colored, decimal):
    """``n`` in at most ``width`` characters: the number, right-aligned,
    then one suffix character (' ', k, M, G, ...; powers of 1000 when
    ``decimal``, else of 1024), as Ceph's tables print counts and sizes."""
    base = 1000 if decimal else 1024
    digits = max(width - 1, 1)
    power = 0
    while power < len(_UNIT_SUFFIXES) - 1 and len(str(int(n) // base ** power)) > digits:
        power += 1
    if power == 0:
        text = str(int(n)).rjust(digits)
    else:
        text = ("%f" % (n / float(base ** power)))[:digits]
        if text.endswith("."):
            text = " " + text[:-1]
    out = text + _UNIT_SUFFIXES[power]
    if not colored:
        return out
    body = colorize(out[:-1], YELLOW if n else BLACK)
    return bold(body) + bold(colorize(out[-1], YELLOW))


def format_dimless(n, width, colored=False):
    return format_units(n, width, colored, decimal=True)


def format_bytes(n, width, colored=False):
    return format_units(n, width, colored, decimal=False)


def merge_dicts(*args):
    """One dict from several; later ones win."""
    out = {}
    for d in args:
        out.update(d)
    return out


def to_pretty_timedelta(n):
    """A timedelta as Ceph prints ages: ``42s``, ``7m``, ``3h``, ``2d``,
    ``5w``, ``4M``, ``2y`` (the largest unit that keeps the number >= 2)."""
    secs = int(n.total_seconds())
    day = 86400
    for limit, div, suffix in ((120, 1, "s"), (7200, 60, "m"), (48 * 3600, 3600, "h"),
                               (14 * day, day, "d"), (84 * day, 7 * day, "w"),
                               (730 * day, 30 * day, "M")):
        if n.total_seconds() < limit:
            return "%d%s" % (secs // div, suffix)
    return "%d%s" % (secs // (365 * day), "y")


def get_most_recent_rate(rates):
    """The last rate of ``get_time_series_rates`` output, 0.0 if none."""
    if not rates:
        return 0.0
    return rates[-1][1]


def get_time_series_rates(data):
    """Per-second rates between consecutive ``(timestamp, value)`` samples
    (pairs with the same timestamp are skipped)."""
    out = []
    for (t0, v0), (t1, v1) in zip(data, data[1:]):
        if t1 > t0:
            out.append((t1, (v1 - v0) / float(t1 - t0)))
    return out
