"""The live page's HTTP side: who may talk to it and how a request is read.

Bound to a loopback address, the page is open to local users; bound to any other address,
every request must carry the random token printed with the URL. On loopback, a request's
Host must name the server as it was started ('localhost' or the address it is bound to,
with its port): a page of another site whose name its owner rebinds to 127.0.0.1 (DNS
rebinding) names its own host, and is refused (403). With a token the Host is not checked:
the machine answers to many names, and a rebound page cannot know the token. Either way a
request that carries an Origin header (a browser names the page that sent it) must come
from the live page itself. The Stop request also needs a custom header, which a
cross-site form or script cannot send without the server's consent, so another site open
in the same browser cannot stop the run.

Nothing a request holds can print a traceback: query values are parsed strictly (400 for
a malformed one), a handler's failure is a bare 500, and the server itself prints nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from stylekit.commands.live import LiveServer

STOP_HEADER = "X-Stylekit-Stop"


MAX_QUERY_FIELDS = 64  # the page sends a token and one since.KEY a run (at most MAX_RUNS of them)
MAX_COUNT_DIGITS = 9  # counts of loss samples and image versions stay far below a billion


class _Refused(Exception):
    """A request answered with `status` and a short text rather than what it asked for."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


def _query(text: str) -> dict[str, str]:
    """The query string's fields, each given at most once; UTF-8 only."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:  # UnicodeDecodeError included
        raise _Refused(HTTPStatus.BAD_REQUEST, "bad query string: not UTF-8, or too many fields") from None
    query = dict(pairs)
    if len(query) != len(pairs):
        raise _Refused(HTTPStatus.BAD_REQUEST, "bad query string: a field given twice")
    return query


def _count(text: str) -> int:
    """A whole number of ASCII digits (str.isdigit() also takes '²', which int() refuses)."""
    if not (0 < len(text) <= MAX_COUNT_DIGITS and text.isascii() and text.isdigit()):
        raise _Refused(HTTPStatus.BAD_REQUEST, f"bad query: counts are 1 to {MAX_COUNT_DIGITS} ASCII digits")
    return int(text)


def is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:  # a host name or an IPv4 address
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def page_html() -> bytes:
    return resources.files("stylekit.commands").joinpath("live.html").read_bytes()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's fully qualified name, which can wait
        # seconds on a machine without DNS; nothing here uses it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request, client_address):
        # What the handler did not answer (a browser that hung up mid-answer) is no news for
        # the terminal, which belongs to the progress display: never a traceback there.
        pass


class IPv6Server(QuietServer):
    """For an IPv6 address: `--live-host ::1` (the URL brackets it: http://[::1]:8750/)."""

    address_family = socket.AF_INET6


def handler_for(live: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # the terminal belongs to the progress display
            pass

        def _send(self, status: int, body: bytes = b"", kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, method) -> None:
            """Run `method`; a refusal is its status and text, and any other exception (a bug)
            a bare 500: nothing reaches the terminal."""
            try:
                method()
            except _Refused as refused:
                self.close_connection = True
                with contextlib.suppress(Exception):
                    self._send(refused.status, refused.text.encode())
            except Exception:
                self.close_connection = True
                with contextlib.suppress(Exception):
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"the live page failed to answer this request")

        def _request(self) -> tuple[list[str], dict[str, str]]:
            """The path's segments, each percent-decoded on its own (a key, a file name, may
            hold a space, '#' or '%'), and the query's fields, once Host, Origin and the token
            are checked."""
            hosts = self.headers.get_all("Host") or []
            if len(hosts) != 1 or (live.token is None and not live.answers_to(hosts[0])):
                raise _Refused(HTTPStatus.FORBIDDEN, f"refused: this page answers only at {live.address} "
                               "(or localhost with that port); this request names another host, or none")
            origin = self.headers.get_all("Origin") or []
            if origin and origin != [f"http://{hosts[0]}"]:  # a browser says which page sent a request
                raise _Refused(HTTPStatus.FORBIDDEN, "refused: a request from another page than this one")
            url = urlsplit(self.path)
            query = _query(url.query)
            if live.token is not None and not hmac.compare_digest(query.get("token", "").encode(), live.token.encode()):
                raise _Refused(HTTPStatus.FORBIDDEN, "this page needs the token printed with its URL")
            return [unquote(p) for p in url.path.split("/") if p], query

        def do_GET(self):
            self._answer(self._get)

        def do_POST(self):
            self._answer(self._post)

        def _get(self):
            parts, query = self._request()
            if not parts:
                return self._send(HTTPStatus.OK, page_html(), "text/html; charset=utf-8")
            if parts == ["state"]:
                since = {k.removeprefix("since."): _count(v) for k, v in query.items() if k.startswith("since.")}
                return self._send(HTTPStatus.OK, live.state_json(since), "application/json")
            if len(parts) == 3 and parts[0] == "image" and parts[2].endswith(".jpg"):
                if "v" in query:  # the page's cache breaker
                    _count(query["v"])
                body = live.image_bytes(parts[1], parts[2].removesuffix(".jpg"))
                if body is not None:
                    return self._send(HTTPStatus.OK, body, "image/jpeg")
            self._send(HTTPStatus.NOT_FOUND, b"not found")

        def _post(self):
            parts, query = self._request()
            if parts != ["stop"]:
                return self._send(HTTPStatus.NOT_FOUND, b"not found")
            if self.headers.get(STOP_HEADER) != "1":
                return self._send(HTTPStatus.FORBIDDEN, f"stop needs the header {STOP_HEADER}: 1".encode())
            live.request_stop(query.get("run"))
            self._send(HTTPStatus.NO_CONTENT)

    return Handler
