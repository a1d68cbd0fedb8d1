#!/usr/bin/env python3
"""allma's mock of the outside world, for tests and benchmarks.

This file owns the whole mock: an asyncio HTTP/1.1 server and a small ESMTP
server, both bound to 127.0.0.1 only, Python 3.11 standard library only, one
event loop and no thread per connection.  allma's HTTP, LLM, MCP and e-mail
steps (libcurl) talk to it instead of the internet.

HTTP side (see README.md for the full reference):
  * every request (except the /__ control endpoints) is logged as one JSON
    line to --log-file and kept in memory for GET /__log;
  * behaviour is chosen per request by query parameters (latency_ms, status,
    retry_after, fail_times, hang_times, drip_ms/drip_bytes, size, redirect,
    body, content_type, hang, drop, close), so tests need no server state;
  * endpoints: /echo, /status/<code>, /files/<n>, /bytes/<n>, /redirect/<n>,
    /mcp (JSON-RPC 2.0, JSON or SSE answers), OpenAI /chat/completions, Anthropic /v1/messages, Gemini
    /models/<m>:generateContent, Bedrock /model/<m>/converse|invoke; the LLM
    reply is chosen by the model name (mock-json, mock-echo, mock-tools, ...);
  * control: GET /__log, GET /__stats, GET /__mail, GET /__health,
    GET /__windows (requests and LLM tokens per second), POST /__ratelimit
    (a provider's rate limit: x-ratelimit-* headers, 429 + Retry-After),
    POST /__reset.

SMTP side: enough ESMTP for libcurl's SMTP client; received messages are
listed by GET /__mail.

Usage:
  python3 mock/mock_server.py --port 0 --port-file /tmp/x.port --smtp-port 0 \
      --log-file /tmp/requests.jsonl
The chosen ports are written to the port file as {"http": N, "smtp": M,
"pid": P} once both servers listen.  SIGTERM/SIGINT stop it cleanly.
"""

import argparse
import asyncio
import base64
import collections
import datetime
import email.utils
import hashlib
import hmac
import http
import json
import math
import mimetypes
import os
import re
import resource
import signal
import sys
import time
import traceback
from urllib.parse import parse_qsl, unquote

HOST = "127.0.0.1"
BACKLOG = 4096
MAX_HEAD_BYTES = 64 * 1024          # request line + headers
LOG_BODY_LIMIT = 64 * 1024          # body text kept per log entry
READ_PAUSE_BYTES = 1 << 20          # pause reading a busy connection beyond this
MAX_GENERATED_BYTES = 1 << 30       # cap for ?size= and /files/<n>
SERVER_NAME = "allma-mock"

REASONS = {s.value: s.phrase for s in http.HTTPStatus}
NO_BODY_STATUSES = frozenset((204, 304))
FILLER_ALPHABET = (b"0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
TRUE_WORDS = frozenset(("1", "true", "yes", "on"))


class BadRequest(Exception):
    """The client sent something we cannot parse; answer with `status`."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def now_iso():
    """Current UTC time as ISO 8601 with milliseconds and a Z."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_date_cache = [0, ""]


def http_date():
    """The Date header value, recomputed at most once a second."""
    sec = int(time.time())
    if sec != _date_cache[0]:
        _date_cache[0] = sec
        _date_cache[1] = email.utils.formatdate(sec, usegmt=True)
    return _date_cache[1]


def filler(n):
    """n bytes of deterministic printable content: byte i is ALPHABET[i % 62]."""
    reps = n // len(FILLER_ALPHABET) + 1
    return (FILLER_ALPHABET * reps)[:n]


def binary_filler(n):
    """n bytes of deterministic binary content: byte i is i % 256 (so NUL
    bytes at every multiple of 256)."""
    reps = n // 256 + 1
    return (bytes(range(256)) * reps)[:n]


def json_filler(n):
    """A valid JSON document of exactly n bytes ({"pad":"012..."}) when
    n >= 10, else n filler bytes."""
    if n < 10:
        return filler(n)
    return b'{"pad":"' + filler(n - 10) + b'"}'


def dumps(obj):
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def header_safe(value):
    """Strip CR/LF so a query parameter cannot inject response headers."""
    return str(value).replace("\r", "").replace("\n", "")


def truthy(value):
    return value is not None and value.lower() in TRUE_WORDS


def int_param(query, name, default, lo, hi):
    """Integer query parameter in [lo, hi]; raises BadRequest otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer")
    if value < lo or value > hi:
        raise BadRequest(f"query parameter {name} must be in [{lo}, {hi}]")
    return value


def estimate_tokens(text):
    """Deterministic token estimate: one token per 4 characters, at least 1."""
    return max(1, (len(text) + 3) // 4)


# --------------------------------------------------------------------------
# HTTP request / response objects
# --------------------------------------------------------------------------

class Request:
    """One parsed HTTP request.  Header names are lower-cased; repeated
    headers are joined with ", "; query is a dict (last value wins)."""

    __slots__ = ("method", "target", "path", "query_string", "query",
                 "version", "headers", "body", "keep_alive")


class Response:
    """What to send back, plus delivery controls (latency, drip, hang...)."""

    __slots__ = ("status", "body", "ctype", "headers", "latency", "drip_ms",
                 "drip_bytes", "close", "hang", "drop")

    def __init__(self, status=200, body=b"", ctype="application/json",
                 headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers if headers is not None else []
        self.latency = 0.0          # seconds before the answer starts
        self.drip_ms = 0            # pause between body chunks
        self.drip_bytes = 0         # body chunk size when dripping
        self.close = False          # Connection: close after this answer
        self.hang = False           # never answer
        self.drop = False           # close the connection without answering


def json_response(status, obj, headers=None):
    return Response(status, dumps(obj), "application/json", headers)


def parse_head(head):
    """Parse a request line and headers (bytes without the final CRLFCRLF)
    into a Request whose body is not yet set.  Raises BadRequest."""
    lines = head.decode("utf-8", "replace").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("unsupported HTTP version", 505)
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[0] in " \t" or name[-1] in " \t":
            raise BadRequest("malformed header line")
        name = name.lower()
        value = value.strip()
        if name in headers:
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    req = Request()
    req.method = method.upper()
    req.version = version
    req.headers = headers
    req.body = b""
    if target.startswith(("http://", "https://")):
        # absolute-form (proxy style): keep only the path part
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    req.target = target
    raw_path, _, qs = target.partition("?")
    qs = qs.partition("#")[0]
    req.path = unquote(raw_path)
    req.query_string = qs
    req.query = dict(parse_qsl(qs, keep_blank_values=True)) if qs else {}
    conn = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        req.keep_alive = "close" not in conn
    else:
        req.keep_alive = "keep-alive" in conn
    return req


def render_head(resp, keep_alive, http10, length):
    """Status line and headers of a response, as bytes."""
    status = resp.status
    out = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
           f"Date: {http_date()}\r\nServer: {SERVER_NAME}\r\n"]
    if status not in NO_BODY_STATUSES:
        if resp.ctype:
            out.append(f"Content-Type: {resp.ctype}\r\n")
        out.append(f"Content-Length: {length}\r\n")
    for name, value in resp.headers:
        out.append(f"{name}: {value}\r\n")
    if not keep_alive:
        out.append("Connection: close\r\n")
    elif http10:
        out.append("Connection: keep-alive\r\n")
    out.append("\r\n")
    # surrogateescape: /bad-bytes sends raw invalid bytes in a header
    return "".join(out).encode("utf-8", "surrogateescape")


class ChunkedBody:
    """Incremental decoder of a chunked request body.  feed() consumes what
    it can from the connection buffer and returns the whole body once the
    last chunk and the trailers are in, else None.  Raises BadRequest."""

    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self, limit):
        self.limit = limit
        self.body = bytearray()
        self.phase = self.SIZE
        self.left = 0

    def feed(self, buf):
        while True:
            if self.phase == self.SIZE:
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > 4096:
                        raise BadRequest("chunk size line too long")
                    return None
                field = bytes(buf[:i]).split(b";", 1)[0].strip()
                del buf[:i + 2]
                try:
                    size = int(field, 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size < 0:
                    raise BadRequest("bad chunk size")
                if len(self.body) + size > self.limit:
                    raise BadRequest("request body too large", 413)
                self.left = size
                self.phase = self.DATA if size else self.TRAILER
            elif self.phase == self.DATA:
                if not buf:
                    return None
                take = min(self.left, len(buf))
                self.body += buf[:take]
                del buf[:take]
                self.left -= take
                if self.left:
                    return None
                self.phase = self.DATA_END
            elif self.phase == self.DATA_END:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise BadRequest("chunk not followed by CRLF")
                del buf[:2]
                self.phase = self.SIZE
            else:  # TRAILER: header lines up to an empty line
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise BadRequest("trailers too large")
                    return None
                del buf[:i + 2]
                if i == 0:
                    return bytes(self.body)


# --------------------------------------------------------------------------
# HTTP connection (one asyncio Protocol per client connection)
# --------------------------------------------------------------------------

class HttpConnection(asyncio.Protocol):
    """Reads requests off one connection and answers them in order.

    Requests are handled one at a time: while an answer is pending (latency,
    drip) further pipelined bytes are only buffered, and reading is paused
    when that buffer grows past READ_PAUSE_BYTES."""

    def __init__(self, app):
        self.app = app
        self.loop = app.loop
        self.transport = None
        self.conn_id = 0
        self.buf = bytearray()
        self.req = None             # head parsed, body still arriving
        self.body_left = 0          # Content-Length bytes still to read
        self.chunked = None         # ChunkedBody while decoding
        self.busy = False           # an answer is pending or conn is closing
        self.hung = False
        self.paused = False
        self.eof = False            # the client shut down its sending side
        self.timer = None

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.conn_id = self.app.conn_opened(self)
        if self.conn_id is None:
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            self.busy = True
            transport.close()

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.conn_id is not None:
            self.app.conn_closed(self)
        self.transport = None

    def eof_received(self):
        """The client half-closed: answer what it sent, then close."""
        self.eof = True
        # (a hung request is never answered: the client closing ends it)
        if (not self.busy or self.hung) and self.transport is not None:
            self.transport.close()
        return True                 # keep the transport open for writing

    def data_received(self, data):
        if self.hung or self.transport is None:
            return
        self.buf += data
        if self.busy:
            if len(self.buf) > READ_PAUSE_BYTES and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        self._process()

    # -- request parsing ---------------------------------------------------

    def _process(self):
        """Handle every complete request in the buffer, as long as each one
        is answered at once; stop at the first deferred answer."""
        while not self.busy and self.transport is not None:
            try:
                req = self._next_request()
            except BadRequest as exc:
                self._reject(exc.status, str(exc))
                return
            if req is None:
                return
            self._dispatch(req)

    def _next_request(self):
        """The next complete request from the buffer, or None."""
        buf = self.buf
        if self.req is None:
            while buf[:2] == b"\r\n":       # stray CRLF between requests
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise BadRequest("request header too large", 431)
                return None
            if end > MAX_HEAD_BYTES:
                raise BadRequest("request header too large", 431)
            req = parse_head(bytes(buf[:end]))
            del buf[:end + 4]
            self._start_body(req)
        req = self.req
        if self.chunked is not None:
            body = self.chunked.feed(buf)
            if body is None:
                return None
            self.chunked = None
        elif self.body_left:
            n = self.body_left
            if len(buf) < n:
                return None
            body = bytes(buf[:n])
            del buf[:n]
            self.body_left = 0
        else:
            body = b""
        req.body = body
        self.req = None
        return req

    def _start_body(self, req):
        """Work out how the body of req is framed; answer 100-continue."""
        limit = self.app.max_body
        te = req.headers.get("transfer-encoding")
        if te is not None:
            if te.lower().rsplit(",", 1)[-1].strip() != "chunked":
                raise BadRequest("unsupported transfer-encoding", 501)
            self.chunked = ChunkedBody(limit)
        else:
            cl = req.headers.get("content-length")
            if cl:
                if not cl.isdigit():
                    raise BadRequest("bad content-length")
                n = int(cl)
                if n > limit:
                    raise BadRequest("request body too large", 413)
                self.body_left = n
        self.req = req
        expects_body = self.chunked is not None or self.body_left
        if (expects_body and not self.buf and req.version == "HTTP/1.1"
                and "100-continue" in req.headers.get("expect", "").lower()):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _reject(self, status, message):
        """Answer a malformed request and close the connection."""
        resp = json_response(status, {"error": {"status": status,
                                                "message": message}})
        self.busy = True
        self.transport.write(render_head(resp, False, False, len(resp.body))
                             + resp.body)
        self.transport.close()

    # -- answering -----------------------------------------------------------

    def _dispatch(self, req):
        """Ask the app for the answer and send it now or after its latency."""
        try:
            resp = self.app.handle(req, self.conn_id)
        except Exception:           # a bug in a handler must not kill the loop
            traceback.print_exc()
            resp = json_response(500, {"error": {"status": 500,
                                                 "message": "mock bug"}})
        self.busy = True
        if resp.drop:
            self.transport.close()
            return
        if resp.hang:
            self.hung = True
            self.buf.clear()
            return
        keep = req.keep_alive and not resp.close
        if resp.latency > 0:
            self.timer = self.loop.call_later(resp.latency, self._respond,
                                              req, resp, keep, False)
        else:
            self._respond(req, resp, keep, True)

    def _respond(self, req, resp, keep, inline):
        """Write the answer (or start dripping it)."""
        self.timer = None
        if self.transport is None:
            return
        body = resp.body
        if resp.status in NO_BODY_STATUSES:
            body = b""
        head = render_head(resp, keep, req.version == "HTTP/1.0", len(body))
        if req.method == "HEAD":
            body = b""
        if resp.drip_bytes and body:
            self.transport.write(head)
            self._drip(body, 0, resp, keep)
            return
        self.transport.write(head + body if body else head)
        self._finish(keep, inline)

    def _drip(self, body, offset, resp, keep):
        """Send the next drip_bytes of body, then pause drip_ms."""
        self.timer = None
        if self.transport is None:
            return
        end = offset + resp.drip_bytes
        self.transport.write(body[offset:end])
        if end >= len(body):
            self._finish(keep, False)
            return
        self.timer = self.loop.call_later(resp.drip_ms / 1000.0, self._drip,
                                          body, end, resp, keep)

    def _finish(self, keep, inline):
        """The answer is out: close, or get ready for the next request."""
        if not keep or self.eof:
            self.transport.close()
            return
        self.busy = False
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if not inline and self.buf:
            self._process()

    def shutdown(self):
        """Close this connection (server shutdown)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()


# --------------------------------------------------------------------------
# LLM providers
# --------------------------------------------------------------------------

MODEL_NAME_RE = re.compile(r"(?:^|[./:])(mock-[A-Za-z0-9-]+)")


class ModelPlan:
    """What a mock model does, decided by its name (see README.md)."""

    __slots__ = ("model", "kind", "fail_status", "slow_ms", "flaky")

    def __init__(self, model):
        self.model = model
        self.kind = "default"
        self.fail_status = 0
        self.slow_ms = 0
        self.flaky = 0
        m = MODEL_NAME_RE.search(model or "")
        name = m.group(1) if m else ""
        if name in ("mock-json", "mock-invalid-json", "mock-echo",
                    "mock-tools", "mock-tools-loop", "mock-bad-bytes"):
            self.kind = name[5:]
            return
        m = re.fullmatch(r"mock-(fail|slow|flaky)-(\d{1,9})", name)
        if not m:
            return
        what, n = m.group(1), int(m.group(2))
        if what == "fail":
            self.fail_status = n if 400 <= n <= 599 else 500
        elif what == "slow":
            self.kind, self.slow_ms = "json", n
        else:
            self.kind, self.flaky = "json", n

    def reply_text(self, last_user):
        """The text the model says (when it does not call a tool)."""
        if self.kind == "json":
            return json.dumps({"answer": 42, "echo": last_user[:50]})
        if self.kind == "invalid-json":
            return "this is not json {"
        if self.kind == "echo":
            return last_user
        if self.kind == "bad-bytes":
            return "before BAD_BYTES after"
        return f"Hello from mock model {self.model}"


class Conversation:
    """Provider-neutral view of an LLM request."""

    __slots__ = ("model", "last_user", "prompt_text", "tools", "tool_result",
                 "wants_json")

    def __init__(self, model):
        self.model = model or ""
        self.wants_json = False     # the request asks for a JSON answer
        self.last_user = ""         # text of the last user message
        self.prompt_text = ""       # all prompt text, for token counts
        self.tools = []             # offered tool names, in order
        self.tool_result = None     # text of a tool result in the last turn


def mentions_json(*texts):
    """Does a system prompt or user message ask for JSON (the APIs without
    a JSON mode: Anthropic, Bedrock)?  The word JSON, any case."""
    return any(re.search(r"\bjson\b", t or "", re.IGNORECASE) for t in texts)


def text_of(content):
    """Plain text of an OpenAI/Anthropic/Bedrock message content: a string
    or a list of parts/blocks (text parts joined with newlines)."""
    if isinstance(content, str):
        return content
    out = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return "\n".join(out)


class OpenAI:
    """OpenAI chat completions (also Azure and any OpenAI-compatible prefix)."""

    name = "openai"

    @staticmethod
    def has_auth(req):
        return "authorization" in req.headers or "api-key" in req.headers

    @staticmethod
    def error(status, message):
        kinds = {400: "invalid_request_error", 401: "invalid_request_error",
                 403: "permission_error", 404: "invalid_request_error",
                 429: "rate_limit_error"}
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message,
                          "type": kinds.get(status, "server_error"),
                          "param": None, "code": code}}

    @staticmethod
    def parse(doc, match):
        conv = Conversation(doc.get("model") or (match and match.group(1)))
        texts = []
        messages = doc.get("messages") or []
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            text = text_of(msg.get("content"))
            texts.append(text)
            if msg.get("role") == "user":
                conv.last_user = text
        if messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") in ("tool", "function"):
            conv.tool_result = text_of(messages[-1].get("content"))
        conv.prompt_text = "\n".join(texts)
        for tool in doc.get("tools") or []:
            fn = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(fn, dict) and fn.get("name"):
                conv.tools.append(fn["name"])
        for fn in doc.get("functions") or []:          # legacy functions
            if isinstance(fn, dict) and fn.get("name"):
                conv.tools.append(fn["name"])
        fmt = doc.get("response_format")
        conv.wants_json = isinstance(fmt, dict) \
            and fmt.get("type") in ("json_object", "json_schema")
        return conv

    @staticmethod
    def reply(conv, seq, text, tool):
        if tool:
            args = json.dumps({"x": 1})
            message = {"role": "assistant", "content": None,
                       "tool_calls": [{"id": f"call_mock_{seq}",
                                       "type": "function",
                                       "function": {"name": tool,
                                                    "arguments": args}}]}
            finish, out = "tool_calls", tool + args
        else:
            message = {"role": "assistant", "content": text}
            finish, out = "stop", text
        p, c = estimate_tokens(conv.prompt_text), estimate_tokens(out)
        return {"id": f"chatcmpl-mock-{seq}", "object": "chat.completion",
                "created": int(time.time()), "model": conv.model,
                "choices": [{"index": 0, "message": message,
                             "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": p, "completion_tokens": c,
                          "total_tokens": p + c}}


class Anthropic:
    """Anthropic Messages API."""

    name = "anthropic"

    @staticmethod
    def has_auth(req):
        return "x-api-key" in req.headers or "authorization" in req.headers

    @staticmethod
    def error(status, message):
        kinds = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error",
                 413: "request_too_large", 429: "rate_limit_error",
                 529: "overloaded_error"}
        return {"type": "error",
                "error": {"type": kinds.get(status, "api_error"),
                          "message": message}}

    @staticmethod
    def parse(doc, match):
        conv = Conversation(doc.get("model") or (match and match.group(1)))
        texts = [text_of(doc.get("system"))]
        messages = doc.get("messages") or []
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            content = msg.get("content")
            text = text_of(content)
            texts.append(text)
            if msg.get("role") == "user":
                conv.last_user = text
        if messages and isinstance(messages[-1], dict) \
                and isinstance(messages[-1].get("content"), list):
            for block in messages[-1]["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    conv.tool_result = text_of(block.get("content"))
        conv.prompt_text = "\n".join(texts)
        for tool in doc.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name"):
                conv.tools.append(tool["name"])
        conv.wants_json = mentions_json(texts[0], conv.last_user)
        return conv

    @staticmethod
    def reply(conv, seq, text, tool):
        if tool:
            content = [{"type": "tool_use", "id": f"toolu_mock_{seq}",
                        "name": tool, "input": {"x": 1}}]
            stop, out = "tool_use", tool + '{"x": 1}'
        else:
            content = [{"type": "text", "text": text}]
            stop, out = "end_turn", text
        return {"id": f"msg_mock_{seq}", "type": "message",
                "role": "assistant", "model": conv.model, "content": content,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": estimate_tokens(conv.prompt_text),
                          "output_tokens": estimate_tokens(out)}}


class Gemini:
    """Google Gemini generateContent (developer API and Vertex paths)."""

    name = "gemini"
    STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED",
                    403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                    409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
                    499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
                    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

    @staticmethod
    def has_auth(req):
        return ("x-goog-api-key" in req.headers or "key" in req.query
                or "authorization" in req.headers)

    @classmethod
    def error(cls, status, message):
        return {"error": {"code": status, "message": message,
                          "status": cls.STATUS_NAMES.get(status, "UNKNOWN")}}

    @staticmethod
    def _parts_text(parts):
        if not isinstance(parts, list):
            return ""
        return "\n".join(p["text"] for p in parts
                         if isinstance(p, dict) and isinstance(p.get("text"), str))

    @classmethod
    def parse(cls, doc, match):
        conv = Conversation(match.group(1))
        sys_inst = doc.get("systemInstruction") or doc.get("system_instruction")
        texts = [cls._parts_text(sys_inst.get("parts"))] \
            if isinstance(sys_inst, dict) else []
        contents = doc.get("contents") or []
        for item in contents:
            if not isinstance(item, dict):
                continue
            text = cls._parts_text(item.get("parts"))
            texts.append(text)
            if item.get("role", "user") == "user":
                conv.last_user = text
        if contents and isinstance(contents[-1], dict) \
                and isinstance(contents[-1].get("parts"), list):
            for part in contents[-1]["parts"]:
                if isinstance(part, dict) and "functionResponse" in part:
                    conv.tool_result = json.dumps(part["functionResponse"])
        conv.prompt_text = "\n".join(texts)
        for tool in doc.get("tools") or []:
            decls = (tool.get("functionDeclarations")
                     or tool.get("function_declarations")
                     if isinstance(tool, dict) else None) or []
            for decl in decls:
                if isinstance(decl, dict) and decl.get("name"):
                    conv.tools.append(decl["name"])
        gen = doc.get("generationConfig") or doc.get("generation_config")
        if isinstance(gen, dict):
            mime = gen.get("responseMimeType") or gen.get("response_mime_type")
            conv.wants_json = isinstance(mime, str) \
                and mime.lower().startswith("application/json")
        return conv

    @staticmethod
    def reply(conv, seq, text, tool):
        if tool:
            parts = [{"functionCall": {"name": tool, "args": {"x": 1}}}]
            out = tool + '{"x": 1}'
        else:
            parts = [{"text": text}]
            out = text
        p, c = estimate_tokens(conv.prompt_text), estimate_tokens(out)
        return {"candidates": [{"content": {"role": "model", "parts": parts},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": p,
                                  "candidatesTokenCount": c,
                                  "totalTokenCount": p + c},
                "modelVersion": conv.model,
                "responseId": f"mock-{seq}"}


class BedrockConverse:
    """AWS Bedrock Converse API (and InvokeModel for amazon.* models)."""

    name = "bedrock"
    ERROR_TYPES = {400: "ValidationException", 401: "UnrecognizedClientException",
                   403: "AccessDeniedException", 404: "ResourceNotFoundException",
                   408: "ModelTimeoutException", 424: "ModelErrorException",
                   429: "ThrottlingException", 503: "ServiceUnavailableException"}

    @staticmethod
    def has_auth(req):
        return "authorization" in req.headers

    @classmethod
    def error(cls, status, message):
        return {"message": message,
                "__type": cls.ERROR_TYPES.get(status, "InternalServerException")}

    @staticmethod
    def parse(doc, match):
        conv = Conversation(match.group(1))
        texts = [text_of(doc.get("system"))]
        messages = doc.get("messages") or []
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            text = text_of(msg.get("content"))
            texts.append(text)
            if msg.get("role") == "user":
                conv.last_user = text
        if messages and isinstance(messages[-1], dict) \
                and isinstance(messages[-1].get("content"), list):
            for block in messages[-1]["content"]:
                if isinstance(block, dict) and "toolResult" in block:
                    conv.tool_result = json.dumps(block["toolResult"])
        conv.prompt_text = "\n".join(texts)
        tool_config = doc.get("toolConfig")
        if isinstance(tool_config, dict):
            for tool in tool_config.get("tools") or []:
                spec = tool.get("toolSpec") if isinstance(tool, dict) else None
                if isinstance(spec, dict) and spec.get("name"):
                    conv.tools.append(spec["name"])
        conv.wants_json = mentions_json(texts[0], conv.last_user)
        return conv

    @staticmethod
    def reply(conv, seq, text, tool):
        if tool:
            content = [{"toolUse": {"toolUseId": f"tooluse_mock_{seq}",
                                    "name": tool, "input": {"x": 1}}}]
            stop, out = "tool_use", tool + '{"x": 1}'
        else:
            content = [{"text": text}]
            stop, out = "end_turn", text
        p, c = estimate_tokens(conv.prompt_text), estimate_tokens(out)
        return {"output": {"message": {"role": "assistant",
                                       "content": content}},
                "stopReason": stop,
                "usage": {"inputTokens": p, "outputTokens": c,
                          "totalTokens": p + c},
                "metrics": {"latencyMs": 1}}


GEMINI_RE = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")
BEDROCK_RE = re.compile(r"/model/([^/]+)/(converse|invoke)$")


def bedrock_invoke_provider(model_id):
    """InvokeModel's body and answer follow the vendor of the model id."""
    if "anthropic." in model_id:
        return Anthropic
    if "openai." in model_id:
        return OpenAI
    return BedrockConverse


# --------------------------------------------------------------------------
# MCP (JSON-RPC 2.0 over streamable HTTP, JSON or SSE answers)
# --------------------------------------------------------------------------

MCP_TOOLS = [
    {"name": "echo", "description": "Echo the given text back.",
     "inputSchema": {"type": "object",
                     "properties": {"text": {"type": "string"}},
                     "required": ["text"]}},
    {"name": "add", "description": "Add two numbers.",
     "inputSchema": {"type": "object",
                     "properties": {"a": {"type": "number"},
                                    "b": {"type": "number"}},
                     "required": ["a", "b"]}},
]


def rpc_error(rpc_id, code, message):
    return {"jsonrpc": "2.0", "id": rpc_id,
            "error": {"code": code, "message": message}}


def mcp_call(msg):
    """Answer one JSON-RPC message; None for a notification."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" \
            or not isinstance(msg.get("method"), str):
        return rpc_error(msg.get("id") if isinstance(msg, dict) else None,
                         -32600, "Invalid Request")
    if "id" not in msg:
        return None
    rpc_id, method = msg["id"], msg["method"]
    params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion",
                                                "2025-03-26"),
                  "capabilities": {"tools": {"listChanged": False}},
                  "serverInfo": {"name": SERVER_NAME, "version": "1.0"}}
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": MCP_TOOLS}
    elif method == "tools/call":
        name = params.get("name")
        if not isinstance(name, str):
            return rpc_error(rpc_id, -32602, "Invalid params: name is required")
        if name == "rpc_error":
            return rpc_error(rpc_id, -32603, "mock tool failure")
        args = params.get("arguments")
        args_json = json.dumps(args if args is not None else {},
                               separators=(",", ":"), sort_keys=True)
        result = {"content": [{"type": "text",
                               "text": f"called {name} with {args_json}"}]}
        if name == "tool_error":
            result["isError"] = True
        if name == "echo":
            result["structuredContent"] = args
    else:
        return rpc_error(rpc_id, -32601, "Method not found")
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}


# --------------------------------------------------------------------------
# The application: routing, request log, counters, mail store
# --------------------------------------------------------------------------

def sse_body(answers):
    """A text/event-stream carrying the answers the way a streamable-HTTP
    MCP server may: a comment, a progress notification, then the answer
    pretty-printed over several data lines of one event."""
    note = {"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": "mock is working"}}
    lines = [": allma mock", "", "event: message", "data: " + json.dumps(note), ""]
    lines += ["id: 1", "event: message"]
    lines += ["data: " + line for line in json.dumps(answers, indent=1).split("\n")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


WINDOW_KEEP = 3600      # seconds of /__windows kept


def usage_total(body):
    """Total tokens of a provider reply's usage (OpenAI, Anthropic, Gemini,
    Bedrock shapes), 0 when it has none."""
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        return 0
    u = body.get("usage") or body.get("usageMetadata") or {}
    if not isinstance(u, dict):
        return 0
    for k in ("total_tokens", "totalTokens", "totalTokenCount"):
        if isinstance(u.get(k), int):
            return u[k]
    return sum(v for k, v in u.items() if isinstance(v, int) and k in (
        "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
        "inputTokens", "outputTokens", "promptTokenCount", "candidatesTokenCount"))


def generic_error(status, message):
    return {"error": {"status": status, "message": message}}


class MockApp:
    """Shared state of the mock and the HTTP request handler."""

    def __init__(self, args, loop):
        self.loop = loop
        self.max_body = args.max_body
        self.max_connections = args.max_connections
        self.log_budget = args.log_memory_mb * 1024 * 1024
        self.log_file = (open(args.log_file, "a", buffering=1, encoding="utf-8")
                         if args.log_file else None)
        self.log = collections.deque()      # (idempotency key, path, json line)
        self.log_bytes = 0
        self.seq = 0                        # log sequence number
        self.reply_seq = 0                  # ids of LLM replies
        self.fail_counts = {}
        self.mail = []
        self.mcp_sessions = {}      # /mcp-stateful: session id -> initialized?
        self.webhook_secrets = {}   # /webhook/<name>: name -> secret (bytes)
        self.webhooks = []          # /webhook/<name>: what each delivery verified
        self.connections = set()
        self.smtp_connections = set()
        self.next_conn_id = 0
        self.open_peak = 0
        self.connections_total = 0
        self.requests = 0
        self.control_requests = 0
        self.by_status = collections.Counter()
        self.started = time.monotonic()
        self.last_activity = self.started
        # GET /__windows: requests and LLM tokens per second of wall time
        self.windows = collections.OrderedDict()   # int(time.time()) -> [n, tokens]
        self.reply_tokens = 0       # usage total of the reply being built
        # POST /__ratelimit: a provider's rate limit, emulated
        self.rl = None
        # POST /__ratelimit?header_replies=N: headers set on the next N answers
        self.rl_headers = None

    # -- connections ---------------------------------------------------------

    def conn_opened(self, conn):
        """Register an HTTP connection; None when over --max-connections."""
        if len(self.connections) >= self.max_connections:
            return None
        self.connections.add(conn)
        self.next_conn_id += 1
        self.connections_total += 1
        if len(self.connections) > self.open_peak:
            self.open_peak = len(self.connections)
        return self.next_conn_id

    def conn_closed(self, conn):
        self.connections.discard(conn)

    def close_all(self):
        """Abort every open connection and close the log file."""
        for conn in list(self.connections) + list(self.smtp_connections):
            conn.shutdown()
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    # -- request log ---------------------------------------------------------

    def log_request(self, req, conn_id):
        """Append req to the log file and the in-memory log."""
        self.seq += 1
        body = req.body
        key = req.headers.get("idempotency-key")
        entry = {"seq": self.seq, "time": now_iso(), "conn": conn_id,
                 "method": req.method, "path": req.path,
                 "query": req.query, "headers": req.headers,
                 "idempotency_key": key, "auth": auth_value(req),
                 "body": body[:LOG_BODY_LIMIT].decode("utf-8", "replace"),
                 "body_bytes": len(body)}
        if len(body) > LOG_BODY_LIMIT:
            entry["body_truncated"] = True
        line = json.dumps(entry)
        if self.log_file:
            self.log_file.write(line + "\n")
        self.log.append((key, req.path, line))
        self.log_bytes += len(line)
        while self.log_bytes > self.log_budget and len(self.log) > 1:
            self.log_bytes -= len(self.log.popleft()[2])

    def reset(self):
        """POST /__reset: forget logged requests, counters and mail."""
        self.log.clear()
        self.log_bytes = 0
        self.fail_counts.clear()
        self.mail.clear()
        self.mcp_sessions.clear()
        self.webhook_secrets.clear()
        self.webhooks.clear()
        self.requests = 0
        self.control_requests = 0
        self.by_status.clear()
        self.windows.clear()
        self.rl = None
        self.rl_headers = None
        self.open_peak = len(self.connections)
        self.connections_total = len(self.connections)

    def count_seen(self, key):
        """How many times key was seen, this time included."""
        n = self.fail_counts.get(key, 0) + 1
        self.fail_counts[key] = n
        return n

    # -- entry point ---------------------------------------------------------

    def handle(self, req, conn_id):
        """Answer one request: control endpoints, or log + route + apply the
        query-parameter behaviour."""
        self.last_activity = time.monotonic()
        if req.path.startswith("/__"):
            self.control_requests += 1
            try:
                return self.control(req)
            except BadRequest as exc:
                return json_response(exc.status,
                                     generic_error(exc.status, str(exc)))
        self.requests += 1
        self.log_request(req, conn_id)
        self.reply_tokens = 0
        limited = self.rate_limited()
        try:
            resp = limited or self.answer(req)
        except BadRequest as exc:
            resp = json_response(exc.status, generic_error(exc.status, str(exc)))
        self.count_window(self.reply_tokens)
        if self.rl is not None and not limited:
            self.rate_limit_headers(resp, self.reply_tokens)
        elif self.rl_headers is not None and not limited:
            self.scripted_rate_limit_headers(resp)
        self.by_status[resp.status] += 1
        return resp

    # -- request windows and rate-limit emulation ------------------------------

    def count_window(self, tokens):
        """Count one request (and its reply's tokens) in its second."""
        sec = int(time.time())
        w = self.windows.get(sec)
        if w is None:
            w = self.windows[sec] = [0, 0]
            while len(self.windows) > WINDOW_KEEP:
                self.windows.popitem(last=False)
        w[0] += 1
        w[1] += tokens

    def rate_limited(self):
        """A 429 when POST /__ratelimit asked for some (fail_429) or the
        emulated budget is spent, else None."""
        rl = self.rl
        if rl is None:
            return None
        self.refill()
        if rl["fail_429"] > 0:
            rl["fail_429"] -= 1
            retry = rl["retry_after"]
        elif rl["rpm"] and rl["req_level"] < 1:
            retry = max(1, math.ceil((1 - rl["req_level"]) * 60.0 / rl["rpm"]))
        elif rl["tpm"] and rl["tok_level"] <= 0:
            retry = max(1, math.ceil(-rl["tok_level"] * 60.0 / rl["tpm"] + 1e-9))
        else:
            if rl["rpm"]:
                rl["req_level"] -= 1
            return None
        rl["limited"] += 1
        resp = json_response(429, generic_error(429, "mock rate limit"))
        resp.headers.append(("Retry-After", str(retry)))
        return resp

    def refill(self):
        rl = self.rl
        now = time.monotonic()
        dt = now - rl["at"]
        rl["at"] = now
        if rl["rpm"]:
            rl["req_level"] = min(rl["rpm"], rl["req_level"] + dt * rl["rpm"] / 60.0)
        if rl["tpm"]:
            rl["tok_level"] = min(rl["tpm"], rl["tok_level"] + dt * rl["tpm"] / 60.0)

    def scripted_rate_limit_headers(self, resp):
        """The headers POST /__ratelimit?header_replies=N asked for, on the
        next N answers (no emulated limit behind them)."""
        h = self.rl_headers
        resp.headers.append(("x-ratelimit-remaining-requests", str(h["remaining"])))
        resp.headers.append(("x-ratelimit-reset-requests", f"{h['reset']:.3f}s"))
        h["left"] -= 1
        if h["left"] <= 0:
            self.rl_headers = None

    def rate_limit_headers(self, resp, tokens):
        """x-ratelimit-* headers as OpenAI sends them (the budget after this
        request; reset: until the budget is full again)."""
        rl = self.rl
        if rl["tpm"]:
            rl["tok_level"] -= tokens
        for kind, limit, level in (("requests", rl["rpm"], rl["req_level"]),
                                   ("tokens", rl["tpm"], rl["tok_level"])):
            if not limit:
                continue
            remaining = max(0, int(level))
            reset = max(0.0, (limit - level) * 60.0 / limit)
            resp.headers.append((f"x-ratelimit-limit-{kind}", str(limit)))
            resp.headers.append((f"x-ratelimit-remaining-{kind}", str(remaining)))
            resp.headers.append((f"x-ratelimit-reset-{kind}", f"{reset:.3f}s"))

    def answer(self, req):
        """The response for a logged request, with the query controls."""
        q = req.query
        if truthy(q.get("hang")):
            resp = Response()
            resp.hang = True
            return resp
        if truthy(q.get("drop")):
            resp = Response()
            resp.drop = True
            return resp
        handler, provider = self.route(req)
        hang_times = int_param(q, "hang_times", 0, 0, 1 << 30)
        if hang_times and self.count_seen("hang:" + fail_key(req, provider)) \
                <= hang_times:
            resp = Response()
            resp.hang = True
            return resp
        error_shape = provider.error if provider else generic_error
        fail_times = int_param(q, "fail_times", 0, 0, 1 << 30)
        status = int_param(q, "status", None, 200, 599)
        if fail_times and self.count_seen("fail:" + fail_key(req, provider)) \
                <= fail_times:
            code = status or 500
            resp = json_response(code, error_shape(code, "mock failure (fail_times)"))
        else:
            resp = handler(req, provider)
            if status is not None and not fail_times:
                if status >= 400:
                    resp = json_response(status,
                                         error_shape(status, f"mock status {status}"))
                else:
                    resp.status = status
            apply_overrides(q, resp)
        retry_after = q.get("retry_after")
        if retry_after is not None:
            resp.headers.append(("Retry-After", header_safe(retry_after)))
        resp.latency += int_param(q, "latency_ms", 0, 0, 86400000) / 1000.0
        drip_ms = int_param(q, "drip_ms", None, 0, 3600000)
        drip_bytes = int_param(q, "drip_bytes", None, 1, 1 << 30)
        if drip_ms is not None or drip_bytes is not None:
            resp.drip_ms = 100 if drip_ms is None else drip_ms
            resp.drip_bytes = 10 if drip_bytes is None else drip_bytes
        if truthy(q.get("close")):
            resp.close = True
        return resp

    def route(self, req):
        """(handler, provider or None) for the request path."""
        path = req.path
        if path.startswith("/echo"):
            return self.echo, None
        if path.startswith("/status/"):
            return self.status_page, None
        if path.startswith("/files/"):
            return self.file_page, None
        if path.startswith("/bytes/"):
            return self.bytes_page, None
        if path.startswith("/redirect/"):
            return self.redirect_page, None
        if path.startswith("/webhook/"):
            return self.webhook, None
        if path == "/bad-bytes":
            return self.bad_bytes_page, None
        if path == "/mcp-stateful":
            return self.mcp_stateful, None
        if path == "/mcp" or path.endswith("/mcp"):
            return self.mcp, None
        if path.endswith("/chat/completions"):
            return self.llm, OpenAI
        if path.endswith("/v1/messages"):
            return self.llm, Anthropic
        if GEMINI_RE.search(path):
            return self.llm, Gemini
        m = BEDROCK_RE.search(path)
        if m:
            if m.group(2) == "invoke":
                return self.llm, bedrock_invoke_provider(m.group(1))
            return self.llm, BedrockConverse
        return self.default_page, None

    # -- endpoints -----------------------------------------------------------

    def webhook(self, req, provider):
        """/webhook/<name>: checks allma's X-Allma-Signature with the secret
        set by POST /__webhook_secret?name=<name>; 200 when it verifies, 401
        with the reason when not.  Every delivery is listed by GET /__webhooks."""
        name = req.path[len("/webhook/"):].strip("/")
        reason = verify_webhook_signature(self.webhook_secrets.get(name),
                                          req.headers.get("x-allma-signature"),
                                          req.body, time.time())
        self.webhooks.append({
            "name": name, "verified": reason is None, "reason": reason,
            "idempotency_key": req.headers.get("idempotency-key"),
            "execution_id": req.headers.get("x-allma-execution-id"),
            "status": req.headers.get("x-allma-status"),
            "signature": req.headers.get("x-allma-signature"),
            "body": req.body.decode("utf-8", "replace")})
        if reason is None:
            return json_response(200, {"verified": True})
        return json_response(401, {"verified": False, "reason": reason})

    @staticmethod
    def default_page(req, provider):
        return json_response(200, {"ok": True, "method": req.method,
                                   "path": req.path})

    @staticmethod
    def echo(req, provider):
        """/echo: the request as JSON."""
        body = req.body.decode("utf-8", "replace")
        parsed = None
        if req.body:
            try:
                parsed = json.loads(req.body)
            except ValueError:
                parsed = None
        out = {"method": req.method, "path": req.path, "query": req.query,
               "headers": req.headers, "body": body, "json": parsed}
        ctype = req.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            out["form"] = dict(parse_qsl(body, keep_blank_values=True))
        return json_response(200, out)

    @staticmethod
    def status_page(req, provider):
        """/status/<code>: that status with a small JSON body."""
        try:
            code = int(req.path[len("/status/"):].strip("/"))
        except ValueError:
            raise BadRequest("/status/<code> needs an integer code")
        if code < 200 or code > 599:
            raise BadRequest("status code must be in [200, 599]")
        return json_response(code, {"status": code,
                                    "reason": REASONS.get(code, "Status")})

    @staticmethod
    def file_page(req, provider):
        """/files/<n>[.ext]: n deterministic bytes; type from the extension."""
        name = req.path[len("/files/"):]
        digits, dot, _ = name.partition(".")
        if not digits.isdigit() or int(digits) > MAX_GENERATED_BYTES:
            raise BadRequest("/files/<n> needs a size in bytes up to 1 GiB")
        ctype = "application/octet-stream"
        if dot:
            ctype = mimetypes.guess_type(name)[0] or ctype
        return Response(200, filler(int(digits)), ctype,
                        [("Content-Disposition",
                          f'attachment; filename="{header_safe(name)}"')])

    @staticmethod
    def bytes_page(req, provider):
        """/bytes/<n>: n deterministic binary bytes (NULs included)."""
        digits = req.path[len("/bytes/"):]
        if not digits.isdigit() or int(digits) > MAX_GENERATED_BYTES:
            raise BadRequest("/bytes/<n> needs a size in bytes up to 1 GiB")
        return Response(200, binary_filler(int(digits)), "application/octet-stream")

    @staticmethod
    def bad_bytes_page(req, provider):
        """/bad-bytes: a text body with invalid UTF-8 and a NUL, and a header
        with invalid UTF-8; ?json=1: a JSON body with invalid UTF-8 in a
        string."""
        headers = [("X-Bad-Bytes", "ok \udcff\udcfe end")]
        if truthy(req.query.get("json")):
            return Response(200, b'{"text":"a\xffb\xc3","n":1}',
                            "application/json", headers)
        return Response(200, b"before \xff\xfe middle \x00 after \xc3",
                        "text/plain; charset=utf-8", headers)

    @staticmethod
    def redirect_page(req, provider):
        """/redirect/<n>: redirect n times (keeping the query), then 200."""
        try:
            n = int(req.path[len("/redirect/"):].strip("/"))
        except ValueError:
            raise BadRequest("/redirect/<n> needs an integer")
        if n <= 0:
            return json_response(200, {"ok": True, "redirected": True})
        location = f"/redirect/{n - 1}"
        if req.query_string:
            location += "?" + req.query_string
        return json_response(302, {"redirect": location},
                             [("Location", header_safe(location))])

    @staticmethod
    def mcp(req, provider):
        """/mcp: JSON-RPC 2.0, single messages or batches; ?sse=1 answers
        with a text/event-stream."""
        if req.method != "POST":
            return json_response(405, generic_error(405, "POST only"),
                                 [("Allow", "POST")])
        try:
            doc = json.loads(req.body)
        except ValueError:
            return json_response(400, rpc_error(None, -32700, "Parse error"))
        headers = [("Mcp-Session-Id", "mock-session")]
        if isinstance(doc, list):
            answers = [a for a in map(mcp_call, doc) if a is not None]
        else:
            answers = mcp_call(doc)
        if not answers:
            return Response(202, b"", None, headers)
        if truthy(req.query.get("sse")):
            return Response(200, sse_body(answers), "text/event-stream", headers)
        return json_response(200, answers, headers)

    def mcp_stateful(self, req, provider):
        """/mcp-stateful: an MCP server that keeps sessions, like the
        official SDKs' default: initialize opens one (Mcp-Session-Id), the
        notifications/initialized notification completes it, and any other
        message needs an initialized session: 400 without a session id,
        404 for an unknown one (POST /__reset forgets all sessions)."""
        if req.method != "POST":
            return json_response(405, generic_error(405, "POST only"),
                                 [("Allow", "POST")])
        try:
            msg = json.loads(req.body)
        except ValueError:
            return json_response(400, rpc_error(None, -32700, "Parse error"))
        if not isinstance(msg, dict):
            return json_response(400, rpc_error(None, -32600, "one message per request"))
        method = msg.get("method")
        if method == "initialize":
            # ?session_id= picks the id (a test of what a client does with
            # the id a server sends, hostile ones included)
            sid = req.query.get("session_id") or \
                f"sess-{len(self.mcp_sessions) + 1}-{int(time.monotonic() * 1000)}"
            sid = header_safe(sid)
            self.mcp_sessions[sid] = False
            return json_response(200, mcp_call(msg), [("Mcp-Session-Id", sid)])
        sid = req.headers.get("mcp-session-id")
        if sid is None:
            return json_response(400, rpc_error(msg.get("id"), -32000,
                                                "Bad Request: No valid session ID provided"))
        if sid not in self.mcp_sessions:
            return json_response(404, rpc_error(msg.get("id"), -32001, "Session not found"))
        if method == "notifications/initialized":
            self.mcp_sessions[sid] = True
            return Response(202, b"", None, [("Mcp-Session-Id", sid)])
        if not self.mcp_sessions[sid]:
            return json_response(400, rpc_error(msg.get("id"), -32002,
                                                "Bad Request: session not initialized"))
        return json_response(200, mcp_call(msg), [("Mcp-Session-Id", sid)])

    def llm(self, req, provider):
        """A provider endpoint: auth check, model-name behaviour, reply."""
        if req.method != "POST":
            return json_response(405, provider.error(405, "method not allowed"),
                                 [("Allow", "POST")])
        # under /noauth/ a provider needs no credential, like a local
        # Ollama, llama.cpp or vLLM server
        if not req.path.startswith("/noauth/") and not provider.has_auth(req):
            return json_response(401, provider.error(401, "missing API key"))
        try:
            doc = json.loads(req.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return json_response(400, provider.error(
                400, "request body must be a JSON object"))
        match = GEMINI_RE.search(req.path) or BEDROCK_RE.search(req.path)
        conv = provider.parse(doc, match)
        plan = ModelPlan(conv.model)
        if plan.kind == "default" and conv.wants_json:
            # any model name answers JSON mode (real flows' model names)
            plan.kind = "json"
        if plan.fail_status:
            return json_response(plan.fail_status, provider.error(
                plan.fail_status, f"mock model {conv.model} fails"))
        if plan.flaky:
            key = req.headers.get("idempotency-key") \
                or hashlib.sha1(req.body).hexdigest()
            if self.count_seen(f"flaky:{conv.model}:{key}") <= plan.flaky:
                return json_response(500, provider.error(500, "mock flaky failure"))
        self.reply_seq += 1
        tool = None
        if plan.kind == "tools-loop" and conv.tools:
            tool = conv.tools[0]
        elif plan.kind == "tools" and conv.tools and conv.tool_result is None:
            tool = conv.tools[0]
        if plan.kind == "tools" and conv.tool_result is not None:
            text = "Tool result: " + conv.tool_result[:200]
        else:
            text = plan.reply_text(conv.last_user)
        body = provider.reply(conv, self.reply_seq, text, tool)
        self.reply_tokens = usage_total(body)
        if provider is Gemini and req.path.endswith(":streamGenerateContent"):
            if req.query.get("alt") == "sse":
                resp = Response(200, b"data: " + dumps(body) + b"\r\n\r\n",
                                "text/event-stream")
            else:
                resp = json_response(200, [body])
        else:
            resp = json_response(200, body)
        if plan.kind == "bad-bytes":
            # invalid UTF-8 raw inside the JSON string of the reply text
            resp.body = resp.body.replace(b"BAD_BYTES", b"\xff\xfe\xc3(")
        resp.latency = plan.slow_ms / 1000.0
        return resp

    # -- control endpoints ---------------------------------------------------

    def control(self, req):
        path, q = req.path, req.query
        if path == "/__log" and req.method == "GET":
            key, prefix = q.get("key"), q.get("path")
            lines = [line for k, p, line in self.log
                     if (key is None or k == key)
                     and (prefix is None or p.startswith(prefix))]
            limit = int_param(q, "limit", 0, 0, 1 << 30)
            if limit:
                lines = lines[-limit:]
            return Response(200, ("[" + ",".join(lines) + "]").encode())
        if path == "/__reset" and req.method == "POST":
            self.reset()
            return json_response(200, {"ok": True})
        if path == "/__stats" and req.method == "GET":
            return json_response(200, self.stats())
        if path == "/__mail" and req.method == "GET":
            return json_response(200, self.mail)
        if path == "/__webhook_secret" and req.method == "POST":
            name = q.get("name", "")
            if not WEBHOOK_NAME_RE.fullmatch(name) or not req.body:
                raise BadRequest("POST /__webhook_secret?name=<[A-Za-z0-9_-]+> with the secret as the body")
            self.webhook_secrets[name] = req.body
            return json_response(200, {"ok": True})
        if path == "/__webhooks" and req.method == "GET":
            return json_response(200, self.webhooks)
        if path == "/__windows" and req.method == "GET":
            since = int_param(q, "since", 0, 0, 1 << 40)
            return json_response(200, {"windowSeconds": 1, "windows": [
                {"start": sec, "requests": n, "tokens": t}
                for sec, (n, t) in self.windows.items() if sec >= since]})
        if path == "/__ratelimit" and req.method == "POST":
            rpm = int_param(q, "requests_per_minute", 0, 0, 1 << 30)
            tpm = int_param(q, "tokens_per_minute", 0, 0, 1 << 30)
            fail = int_param(q, "fail_429", 0, 0, 1 << 30)
            retry = int_param(q, "retry_after", 1, 0, 86400)
            replies = int_param(q, "header_replies", 0, 0, 1 << 30)
            if replies:
                self.rl_headers = {
                    "left": replies,
                    "remaining": int_param(q, "remaining_requests", 0, 0, 1 << 30),
                    "reset": float(int_param(q, "reset_requests", 1, 0, 86400))}
                if not (rpm or tpm or fail):
                    return json_response(200, {"ok": True, "headerReplies": replies})
            if not (rpm or tpm or fail):
                self.rl = None
                self.rl_headers = None
                return json_response(200, {"ok": True, "rateLimit": None})
            self.rl = {"rpm": rpm, "tpm": tpm, "fail_429": fail, "retry_after": retry,
                       "req_level": float(rpm), "tok_level": float(tpm),
                       "at": time.monotonic(), "limited": 0}
            return json_response(200, {"ok": True, "rateLimit": {
                "requests_per_minute": rpm, "tokens_per_minute": tpm,
                "fail_429": fail, "retry_after": retry}})
        if path == "/__health":
            return json_response(200, {"ok": True})
        return json_response(404, generic_error(404, "unknown control endpoint"))

    def stats(self):
        return {"requests": self.requests,
                "control_requests": self.control_requests,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "connections_open": len(self.connections),
                "connections_peak": self.open_peak,
                "connections_total": self.connections_total,
                "smtp_connections_open": len(self.smtp_connections),
                "log_entries": len(self.log),
                "mail": len(self.mail),
                "rate_limited": self.rl["limited"] if self.rl else 0,
                "uptime_s": round(time.monotonic() - self.started, 3)}


WEBHOOK_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
WEBHOOK_TOLERANCE_S = 300


def verify_webhook_signature(secret, header, body, now):
    """None when header ("t=<unix>,v1=<hex>") is HMAC-SHA256(secret,
    "<t>." + body) made within WEBHOOK_TOLERANCE_S of now, else the reason."""
    if secret is None:
        return "no secret set for this webhook"
    if not header:
        return "no X-Allma-Signature header"
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or not v1:
        return "malformed X-Allma-Signature"
    if abs(now - int(t)) > WEBHOOK_TOLERANCE_S:
        return "timestamp outside the tolerance"
    expected = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, v1):
        return "signature mismatch"
    return None


def auth_value(req):
    """The credential the client sent, whichever provider style it uses."""
    h = req.headers
    for name in ("authorization", "x-api-key", "x-goog-api-key", "api-key"):
        if name in h:
            return h[name]
    return req.query.get("key")


def fail_key(req, provider):
    """Counter key for ?fail_times: fail_key, else key (not on Gemini paths,
    where ?key= is the API key), else Idempotency-Key, else the target."""
    q = req.query
    if q.get("fail_key"):
        return q["fail_key"]
    if q.get("key") and provider is not Gemini:
        return q["key"]
    idem = req.headers.get("idempotency-key")
    if idem:
        return idem
    return req.method + " " + req.target


def apply_overrides(q, resp):
    """?redirect / redirect_to, ?size, ?body and ?content_type."""
    target = q.get("redirect_to") or q.get("redirect")
    if target:
        code = int_param(q, "redirect_status", 302, 300, 399)
        resp.status = code
        resp.body = dumps({"redirect": target})
        resp.ctype = "application/json"
        resp.headers.append(("Location", header_safe(target)))
    size = int_param(q, "size", None, 0, MAX_GENERATED_BYTES)
    if size is not None:
        resp.body = json_filler(size)
        resp.ctype = "application/json" if size >= 10 else "text/plain"
    body = q.get("body")
    if body is not None:
        resp.body = body.encode("utf-8")
        resp.ctype = ("application/json" if body.lstrip()[:1] in ("{", "[")
                      else "text/plain; charset=utf-8")
    ctype = q.get("content_type")
    if ctype is not None:
        resp.ctype = header_safe(ctype)


# --------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------

class SmtpConnection(asyncio.Protocol):
    """One ESMTP session.  Accepts any sender, any recipient (except local
    parts starting with "reject", answered 550) and any AUTH PLAIN/LOGIN
    credentials (user name and password are recorded with each message, so
    that tests can check what a client logged in with); each message is
    stored in app.mail."""

    MAX_LINE = 1 << 20

    def __init__(self, app):
        self.app = app
        self.transport = None
        self.buf = bytearray()
        self.state = "command"      # command | data | auth-plain | auth-user | auth-pass
        self.helo = None
        self.auth_user = None
        self.auth_password = None
        self.data_lines = []
        self.data_bytes = 0
        self._reset_tx()

    def _reset_tx(self):
        self.mail_from = None
        self.rcpt_to = []

    def connection_made(self, transport):
        self.transport = transport
        self.app.smtp_connections.add(self)
        self.reply("220 mock.localhost ESMTP allma-mock ready")

    def connection_lost(self, exc):
        self.app.smtp_connections.discard(self)
        self.transport = None

    def shutdown(self):
        if self.transport is not None:
            self.transport.abort()

    def reply(self, text):
        if self.transport is not None:
            self.transport.write(text.encode("utf-8") + b"\r\n")

    def data_received(self, data):
        self.buf += data
        while self.transport is not None:
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > self.MAX_LINE and self.state != "data":
                    self.reply("500 5.5.2 line too long")
                    self.transport.close()
                return
            raw = bytes(self.buf[:i + 1])
            del self.buf[:i + 1]
            if self.state == "data":
                self._data_line(raw)
            else:
                self.app.last_activity = time.monotonic()
                self._line(raw.rstrip(b"\r\n").decode("utf-8", "replace"))

    def _data_line(self, raw):
        """One line of the DATA section (raw, with its line ending)."""
        if raw in (b".\r\n", b".\n"):
            self._store()
            return
        if raw.startswith(b"."):
            raw = raw[1:]               # dot-unstuffing
        self.data_lines.append(raw)
        self.data_bytes += len(raw)

    def _store(self):
        data = b"".join(self.data_lines)
        self.data_lines = []
        self.data_bytes = 0
        self.state = "command"
        if len(data) > self.app.max_body:
            self.reply("552 5.3.4 message too big")
        else:
            self.app.mail.append({"mail_from": self.mail_from,
                                  "rcpt_to": self.rcpt_to,
                                  "data": data.decode("utf-8", "replace"),
                                  "helo": self.helo,
                                  "auth_user": self.auth_user,
                                  "auth_password": self.auth_password,
                                  "time": now_iso()})
            answer = f"250 2.0.0 OK queued as mock-{len(self.app.mail)}"
            held = [r.lower() for r in self.rcpt_to
                    if r.lower().lstrip("<").startswith("hold")]
            if any(self.app.count_seen("hold:" + r) == 1 for r in held):
                # stored, never acknowledged: the first message to a "hold"
                # address stays in flight until the client goes away
                pass
            elif any(r.lower().lstrip("<").startswith("slow") for r in self.rcpt_to):
                # stored, but acknowledged 3 s later: a send that is still
                # in flight when the test crashes the server
                asyncio.get_event_loop().call_later(3.0, self.reply, answer)
            else:
                self.reply(answer)
        self._reset_tx()

    def _line(self, line):
        """One command line (or an AUTH continuation)."""
        if self.state.startswith("auth-"):
            self._auth_step(line)
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        handler = getattr(self, "cmd_" + verb, None)
        if handler is None:
            self.reply("500 5.5.1 command not recognized")
        else:
            handler(arg.strip())

    # -- commands ------------------------------------------------------------

    def cmd_EHLO(self, arg):
        self.helo = arg
        self._reset_tx()
        self.reply(f"250-mock.localhost greets {arg}\r\n"
                   f"250-SIZE {self.app.max_body}\r\n"
                   "250-8BITMIME\r\n250-SMTPUTF8\r\n"
                   "250-AUTH PLAIN LOGIN\r\n250 HELP")

    def cmd_HELO(self, arg):
        self.helo = arg
        self._reset_tx()
        self.reply("250 mock.localhost")

    def cmd_MAIL(self, arg):
        m = re.match(r"(?i)FROM:\s*<([^>]*)>(.*)$", arg)
        if not m:
            self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
            return
        if self.mail_from is not None:
            self.reply("503 5.5.1 sender already given")
            return
        size = re.search(r"(?i)\bSIZE=(\d+)", m.group(2))
        if size and int(size.group(1)) > self.app.max_body:
            self.reply("552 5.3.4 message size exceeds limit")
            return
        self.mail_from = m.group(1)
        self.reply("250 2.1.0 OK")

    def cmd_RCPT(self, arg):
        m = re.match(r"(?i)TO:\s*<([^>]*)>", arg)
        if not m:
            self.reply("501 5.5.4 syntax: RCPT TO:<address>")
            return
        if self.mail_from is None:
            self.reply("503 5.5.1 need MAIL before RCPT")
            return
        addr = m.group(1)
        if addr.lower().startswith("reject"):
            self.reply("550 5.1.1 mailbox unavailable")
            return
        self.rcpt_to.append(addr)
        self.reply("250 2.1.5 OK")

    def cmd_DATA(self, arg):
        if not self.rcpt_to:
            self.reply("503 5.5.1 need RCPT before DATA")
            return
        self.state = "data"
        self.reply("354 End data with <CR><LF>.<CR><LF>")

    def cmd_RSET(self, arg):
        self._reset_tx()
        self.reply("250 2.0.0 OK")

    def cmd_NOOP(self, arg):
        self.reply("250 2.0.0 OK")

    def cmd_VRFY(self, arg):
        self.reply("252 2.1.5 cannot verify, will accept")

    def cmd_HELP(self, arg):
        self.reply("214 EHLO HELO MAIL RCPT DATA RSET NOOP QUIT AUTH")

    def cmd_STARTTLS(self, arg):
        self.reply("454 4.7.0 TLS not available")

    def cmd_QUIT(self, arg):
        self.reply("221 2.0.0 bye")
        self.transport.close()
        self.transport = None       # ignore anything sent after QUIT

    def cmd_AUTH(self, arg):
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech == "PLAIN":
            if initial:
                self._auth_plain(initial)
            else:
                self.state = "auth-plain"
                self.reply("334 ")
        elif mech == "LOGIN":
            if initial:
                self.auth_user = b64_text(initial)
                self.state = "auth-pass"
                self.reply("334 UGFzc3dvcmQ6")
            else:
                self.state = "auth-user"
                self.reply("334 VXNlcm5hbWU6")
        else:
            self.reply("504 5.5.4 unrecognized authentication type")

    def _auth_step(self, line):
        """Continuation lines of AUTH PLAIN / LOGIN; "*" cancels."""
        state, self.state = self.state, "command"
        if line == "*":
            self.reply("501 5.7.0 authentication cancelled")
        elif state == "auth-plain":
            self._auth_plain(line)
        elif state == "auth-user":
            self.auth_user = b64_text(line)
            self.state = "auth-pass"
            self.reply("334 UGFzc3dvcmQ6")
        else:
            self.auth_password = b64_text(line)
            self.reply("235 2.7.0 authentication successful")

    def _auth_plain(self, b64):
        parts = b64_text(b64).split("\0")
        self.auth_user = parts[1] if len(parts) >= 2 else parts[0]
        self.auth_password = parts[2] if len(parts) >= 3 else None
        self.reply("235 2.7.0 authentication successful")


def b64_text(value):
    try:
        return base64.b64decode(value).decode("utf-8", "replace")
    except ValueError:
        return ""


# --------------------------------------------------------------------------
# Process: arguments, limits, start and stop
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="allma mock HTTP/SMTP server "
                                "(binds 127.0.0.1 only)")
    p.add_argument("--port", type=int, default=0,
                   help="HTTP port (0 = pick a free one)")
    p.add_argument("--smtp-port", type=int, default=0,
                   help="SMTP port (0 = pick a free one, -1 = no SMTP)")
    p.add_argument("--port-file",
                   help='write {"http": N, "smtp": M, "pid": P} here once listening')
    p.add_argument("--log-file", help="append one JSON line per request")
    p.add_argument("--max-connections", type=int, default=100000,
                   help="open HTTP connections beyond this get 503 + close")
    p.add_argument("--max-body", type=int, default=256 * 1024 * 1024,
                   help="largest request body / mail message in bytes")
    p.add_argument("--log-memory-mb", type=int, default=256,
                   help="memory budget of the in-memory request log")
    p.add_argument("--idle-exit-seconds", type=float, default=0,
                   help="exit after this long without requests (0 = never)")
    return p.parse_args(argv)


def raise_fd_limit():
    """Raise the open-files soft limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        print(f"allma-mock: cannot raise fd limit: {exc}", file=sys.stderr)


def write_port_file(path, ports):
    """Write the port file atomically (readers never see half of it)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ports, f)
    os.replace(tmp, path)


async def idle_watch(app, seconds, stop):
    """Set stop once no request arrived for `seconds`."""
    while not stop.is_set():
        idle = time.monotonic() - app.last_activity
        if idle >= seconds:
            print(f"allma-mock: idle for {seconds}s, exiting", file=sys.stderr)
            stop.set()
            return
        await asyncio.sleep(min(seconds - idle, 1.0) + 0.01)


async def serve(args):
    """Run both servers until SIGTERM/SIGINT or the idle timeout."""
    loop = asyncio.get_running_loop()
    app = MockApp(args, loop)
    http_server = await loop.create_server(lambda: HttpConnection(app), HOST,
                                           args.port, backlog=BACKLOG)
    servers = [http_server]
    ports = {"http": http_server.sockets[0].getsockname()[1], "smtp": None,
             "pid": os.getpid()}
    if args.smtp_port >= 0:
        smtp_server = await loop.create_server(lambda: SmtpConnection(app),
                                               HOST, args.smtp_port,
                                               backlog=BACKLOG)
        servers.append(smtp_server)
        ports["smtp"] = smtp_server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.port_file:
        write_port_file(args.port_file, ports)
    print(f"allma-mock: listening on {HOST} http={ports['http']} "
          f"smtp={ports['smtp']} pid={ports['pid']}", file=sys.stderr, flush=True)
    watcher = None
    if args.idle_exit_seconds > 0:
        watcher = asyncio.create_task(idle_watch(app, args.idle_exit_seconds, stop))
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        for server in servers:
            server.close()
        app.close_all()
        for server in servers:
            await server.wait_closed()
        if args.port_file:
            try:
                os.unlink(args.port_file)
            except OSError:
                pass
    print("allma-mock: stopped", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    raise_fd_limit()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
