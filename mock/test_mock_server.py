#!/usr/bin/env python3
"""Self-test of mock_server.py (stdlib unittest).

This file owns the tests of allma's mock server: it starts the server on
127.0.0.1 with ephemeral ports, then exercises every feature over real
sockets (raw HTTP, http.client, smtplib, and the curl binary when present,
since allma's client is libcurl).  Process-level behaviour (SIGTERM, SIGINT,
idle exit, --max-connections) uses servers of its own.

    python3 mock/test_mock_server.py        # exits non-zero on failure
"""

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "mock_server.py")
HOST = "127.0.0.1"
CURL = shutil.which("curl")
FILLER = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def start_server(tmpdir, *extra):
    """Start a mock; returns (process, ports dict, port file, log file)."""
    port_file = os.path.join(tmpdir, f"{uuid.uuid4().hex}.port")
    log_file = os.path.join(tmpdir, f"{uuid.uuid4().hex}.jsonl")
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--port", "0", "--smtp-port", "0",
         "--port-file", port_file, "--log-file", log_file, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            raise RuntimeError("mock exited: " + proc.stderr.read().decode())
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("mock did not write its port file")
        time.sleep(0.02)
    with open(port_file) as f:
        ports = json.load(f)
    return proc, ports, port_file, log_file


class RawConn:
    """A client socket that keeps bytes read past the end of a response, so
    pipelined responses can be read one by one."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def sendall(self, data):
        self.sock.sendall(data)

    def recv(self, n):
        if self.buf:
            data, self.buf = self.buf[:n], self.buf[n:]
            return data
        return self.sock.recv(n)

    def close(self):
        self.sock.close()

    def read_response(self):
        """(status, headers, body) of the next response; header names are
        lower-cased.  None on EOF before any byte of a response."""
        data = self.buf
        self.buf = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                if data:
                    raise AssertionError(f"truncated response head: {data!r}")
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("truncated response body")
            rest += chunk
        self.buf = rest[length:]
        return status, headers, rest[:length]


def read_response(conn):
    return conn.read_response()


class MockServerTest(unittest.TestCase):
    """Features of one shared mock server."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="allma-mock-test-")
        cls.proc, cls.ports, cls.port_file, cls.log_file = \
            start_server(cls.tmp.name)
        cls.port = cls.ports["http"]
        cls.smtp_port = cls.ports["smtp"]

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGTERM)
        try:
            cls.proc.wait(timeout=10)
        finally:
            cls.proc.stderr.close()
            cls.tmp.cleanup()

    # -- helpers -------------------------------------------------------------

    def request(self, method, path, body=None, headers=None):
        """One request on a fresh connection; (status, headers, body bytes)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get_json(self, path, method="GET", body=None, headers=None):
        status, hdrs, data = self.request(method, path, body, headers)
        return status, hdrs, json.loads(data) if data else None

    def post_json(self, path, doc, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.get_json(path, "POST", json.dumps(doc), h)

    def connect(self, timeout=10):
        conn = RawConn(self.port, timeout)
        self.addCleanup(conn.close)
        return conn

    def log_for(self, path):
        return self.get_json("/__log?path=" + path)[2]

    def uniq(self):
        return "/u/" + uuid.uuid4().hex

    # -- process and port file -------------------------------------------------

    def test_port_file(self):
        self.assertIsInstance(self.ports["http"], int)
        self.assertIsInstance(self.ports["smtp"], int)
        self.assertNotEqual(self.ports["http"], self.ports["smtp"])
        self.assertEqual(self.ports["pid"], self.proc.pid)

    def test_health(self):
        self.assertEqual(self.get_json("/__health")[2], {"ok": True})

    # -- HTTP protocol handling ------------------------------------------------

    def test_echo(self):
        status, hdrs, doc = self.post_json("/echo/sub?a=1&b=two", {"x": [1, 2]},
                                           {"X-Custom": "v"})
        self.assertEqual(status, 200)
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertEqual(doc["method"], "POST")
        self.assertEqual(doc["path"], "/echo/sub")
        self.assertEqual(doc["query"], {"a": "1", "b": "two"})
        self.assertEqual(doc["headers"]["x-custom"], "v")
        self.assertEqual(doc["body"], '{"x": [1, 2]}')
        self.assertEqual(doc["json"], {"x": [1, 2]})

    def test_echo_any_method_and_non_json(self):
        for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
            body = None if method == "GET" else "plain text"
            status, _, doc = self.get_json("/echo", method, body)
            self.assertEqual(status, 200)
            self.assertEqual(doc["method"], method)
            self.assertIsNone(doc["json"])
        _, _, doc = self.get_json("/echo", "POST", "a=1&b=x+y", {
            "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(doc["form"], {"a": "1", "b": "x y"})

    def test_keep_alive_reuses_connection(self):
        path = self.uniq()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        self.addCleanup(conn.close)
        for i in range(3):
            conn.request("POST", f"{path}?i={i}", body=f"body{i}")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["path"], path)
        entries = self.log_for(path)
        self.assertEqual([e["body"] for e in entries], ["body0", "body1", "body2"])
        self.assertEqual(len({e["conn"] for e in entries}), 1)

    def test_pipelined_requests_answered_in_order(self):
        sock = self.connect()
        reqs = b"".join(
            f"GET /echo?n={n}&latency_ms={lat} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            for n, lat in ((1, 200), (2, 0), (3, 50)))
        sock.sendall(reqs)
        seen = [json.loads(read_response(sock)[2])["query"]["n"] for _ in range(3)]
        self.assertEqual(seen, ["1", "2", "3"])

    def test_content_length_body_in_pieces(self):
        sock = self.connect()
        body = b'{"k": "' + b"v" * 100000 + b'"}'
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n")
        for i in range(0, len(body), 7000):
            sock.sendall(body[i:i + 7000])
        status, _, data = read_response(sock)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)["json"], {"k": "v" * 100000})

    def test_chunked_request_body(self):
        sock = self.connect()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     b"5;ext=1\r\nhello\r\n")
        time.sleep(0.05)
        sock.sendall(b"7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
                     b"GET /echo?second=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, data = read_response(sock)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)["body"], "hello, world")
        status, _, data = read_response(sock)
        self.assertEqual(json.loads(data)["query"], {"second": "1"})

    def test_bad_chunk_is_400(self):
        sock = self.connect()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
        status, hdrs, _ = read_response(sock)
        self.assertEqual(status, 400)
        self.assertEqual(hdrs["connection"], "close")

    def test_expect_100_continue(self):
        sock = self.connect()
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"data")
        status, _, data = read_response(sock)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)["body"], "data")

    def test_http10_closes_by_default(self):
        sock = self.connect()
        sock.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
        status, hdrs, data = read_response(sock)
        self.assertEqual(status, 200)
        self.assertEqual(hdrs["connection"], "close")
        self.assertEqual(sock.recv(10), b"")

    def test_http10_keep_alive(self):
        sock = self.connect()
        for _ in range(2):
            sock.sendall(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, hdrs, _ = read_response(sock)
            self.assertEqual(status, 200)
            self.assertEqual(hdrs["connection"], "keep-alive")

    def test_half_closed_client_still_answered(self):
        sock = self.connect()
        sock.sendall(b"GET /echo?latency_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sock.shutdown(socket.SHUT_WR)
        status, _, data = read_response(sock)
        self.assertEqual((status, json.loads(data)["path"]), (200, "/echo"))
        self.assertEqual(sock.recv(10), b"")

    def test_connection_close_request(self):
        sock = self.connect()
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, hdrs, _ = read_response(sock)
        self.assertEqual(hdrs["connection"], "close")
        self.assertEqual(sock.recv(10), b"")

    def test_close_param(self):
        sock = self.connect()
        sock.sendall(b"GET /echo?close=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, hdrs, _ = read_response(sock)
        self.assertEqual(status, 200)
        self.assertEqual(hdrs["connection"], "close")
        self.assertEqual(sock.recv(10), b"")

    def test_malformed_request_is_400(self):
        sock = self.connect()
        sock.sendall(b"NONSENSE\r\n\r\n")
        status, hdrs, _ = read_response(sock)
        self.assertEqual(status, 400)
        self.assertEqual(sock.recv(10), b"")

    def test_head_has_length_but_no_body(self):
        sock = self.connect()
        sock.sendall(b"HEAD /files/1234 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"HTTP/1.1 201 " not in data:
            data += sock.recv(65536)
        first, _, rest = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 1234", first)
        self.assertTrue(rest.startswith(b"HTTP/1.1 201 "), rest[:40])

    def test_bad_query_parameter_is_400(self):
        status, _, doc = self.get_json("/echo?latency_ms=soon")
        self.assertEqual(status, 400)
        self.assertIn("latency_ms", doc["error"]["message"])

    # -- request log -------------------------------------------------------------

    def test_request_log_memory_and_file(self):
        key = uuid.uuid4().hex
        path = self.uniq()
        self.request("POST", path + "?q=1", body='{"a": 1}',
                     headers={"Idempotency-Key": key,
                              "Authorization": "Bearer sk-test"})
        entries = self.get_json("/__log?key=" + key)[2]
        self.assertEqual(len(entries), 1)
        e = entries[0]
        self.assertEqual(e["method"], "POST")
        self.assertEqual(e["path"], path)
        self.assertEqual(e["query"], {"q": "1"})
        self.assertEqual(e["headers"]["idempotency-key"], key)
        self.assertEqual(e["idempotency_key"], key)
        self.assertEqual(e["auth"], "Bearer sk-test")
        self.assertEqual(e["body"], '{"a": 1}')
        self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        with open(self.log_file) as f:
            lines = [json.loads(line) for line in f if key in line]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["body"], '{"a": 1}')
        self.assertEqual(lines[0]["seq"], e["seq"])

    def test_log_body_truncated_at_64k(self):
        path = self.uniq()
        self.request("POST", path, body=b"x" * 70000)
        e = self.log_for(path)[0]
        self.assertEqual(len(e["body"]), 65536)
        self.assertEqual(e["body_bytes"], 70000)
        self.assertTrue(e["body_truncated"])

    def test_log_limit_and_control_not_logged(self):
        path = self.uniq()
        for i in range(3):
            self.request("GET", f"{path}?i={i}")
        entries = self.get_json(f"/__log?path={path}&limit=2")[2]
        self.assertEqual([e["query"]["i"] for e in entries], ["1", "2"])
        self.assertFalse(any(e["path"].startswith("/__")
                             for e in self.get_json("/__log")[2]))

    def test_unknown_control_endpoint(self):
        self.assertEqual(self.request("GET", "/__nope")[0], 404)

    # -- query-parameter behaviour -----------------------------------------------

    def test_latency(self):
        t0 = time.monotonic()
        status, _, _ = self.request("GET", "/echo?latency_ms=300")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_status_param_and_retry_after(self):
        status, hdrs, doc = self.get_json("/anything?status=503&retry_after=2")
        self.assertEqual(status, 503)
        self.assertEqual(hdrs["retry-after"], "2")
        self.assertEqual(doc["error"]["status"], 503)
        status, _, _ = self.request("GET", "/anything?status=202")
        self.assertEqual(status, 202)

    def test_status_path(self):
        status, _, doc = self.get_json("/status/418")
        self.assertEqual(status, 418)
        self.assertEqual(doc["status"], 418)
        status, hdrs, data = self.request("GET", "/status/204")
        self.assertEqual((status, data), (204, b""))
        self.assertNotIn("content-length", hdrs)
        self.assertEqual(self.request("GET", "/status/99")[0], 400)

    def test_fail_times_by_key(self):
        key = uuid.uuid4().hex
        path = f"/flaky?fail_times=2&key={key}&status=429"
        codes = [self.request("GET", path)[0] for _ in range(4)]
        self.assertEqual(codes, [429, 429, 200, 200])
        other = uuid.uuid4().hex
        self.assertEqual(self.request("GET", f"/flaky?fail_times=1&key={other}")[0], 500)

    def test_webhook_signature(self):
        name = "hook-" + uuid.uuid4().hex[:8]
        secret = b"s3cr3t-" + uuid.uuid4().hex.encode()
        self.assertEqual(self.request("POST", f"/__webhook_secret?name={name}", body=secret)[0], 200)
        self.assertEqual(self.request("POST", "/__webhook_secret?name=bad%20name", body=b"x")[0], 400)
        body = b'{"status": "COMPLETED"}'

        def sign(key, t, data):
            return "t=%d,v1=%s" % (t, hmac.new(key, b"%d." % t + data, hashlib.sha256).hexdigest())

        now = int(time.time())
        cases = [
            (sign(secret, now, body), 200, None),
            (sign(b"wrong", now, body), 401, "signature mismatch"),
            (sign(secret, now - 3600, body), 401, "timestamp outside the tolerance"),
            ("v1=abc", 401, "malformed X-Allma-Signature"),
            (None, 401, "no X-Allma-Signature header"),
        ]
        for sig, code, reason in cases:
            headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
            if sig:
                headers["X-Allma-Signature"] = sig
            status, _, doc = self.get_json(f"/webhook/{name}", "POST", body, headers)
            self.assertEqual(status, code, sig)
            self.assertEqual(doc["verified"], code == 200)
        # a body changed in transit does not verify
        status, _, _ = self.get_json(f"/webhook/{name}", "POST", b'{"status": "FAILED"}',
                                     {"X-Allma-Signature": sign(secret, now, body)})
        self.assertEqual(status, 401)
        # an unknown webhook name has no secret
        status, _, doc = self.get_json("/webhook/nobody", "POST", body,
                                       {"X-Allma-Signature": sign(secret, now, body)})
        self.assertEqual((status, doc["reason"]), (401, "no secret set for this webhook"))
        seen = [w for w in self.get_json("/__webhooks")[2] if w["name"] == name]
        self.assertEqual([w["reason"] for w in seen],
                         [r for _, _, r in cases] + ["signature mismatch"])
        # fail_times answers before the check (a retried delivery)
        key = uuid.uuid4().hex
        codes = [self.request("POST", f"/webhook/{name}?fail_times=2", body=body,
                              headers={"Idempotency-Key": key,
                                       "X-Allma-Signature": sign(secret, now, body)})[0]
                 for _ in range(3)]
        self.assertEqual(codes, [500, 500, 200])

    def test_fail_times_by_idempotency_key(self):
        key = uuid.uuid4().hex
        codes = [self.request("POST", "/x?fail_times=1", body="b",
                              headers={"Idempotency-Key": key})[0]
                 for _ in range(3)]
        self.assertEqual(codes, [500, 200, 200])

    def test_fail_times_without_key_uses_target(self):
        path = self.uniq() + "?fail_times=1"
        self.assertEqual([self.request("GET", path)[0] for _ in range(2)],
                         [500, 200])

    def test_drip(self):
        sock = self.connect()
        t0 = time.monotonic()
        sock.sendall(b"GET /x?size=50&drip_ms=60&drip_bytes=10 HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        status, hdrs, body = read_response(sock)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200)
        self.assertEqual(len(body), 50)
        self.assertEqual(hdrs["content-length"], "50")
        self.assertGreaterEqual(elapsed, 0.24)      # 4 pauses of 60 ms

    def test_drip_arrives_in_pieces(self):
        sock = self.connect()
        sock.sendall(b"GET /x?body=abcdef&drip_ms=100&drip_bytes=2 HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, got = data.partition(b"\r\n\r\n")
        self.assertLessEqual(len(got), 2)
        while len(got) < 6:
            got += sock.recv(4096)
        self.assertEqual(got, b"abcdef")

    def test_size(self):
        status, hdrs, data = self.request("GET", "/x?size=100000")
        self.assertEqual(len(data), 100000)
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertEqual(len(json.loads(data)["pad"]), 99990)
        self.assertEqual(self.request("GET", "/x?size=4")[2], b"0123")
        self.assertEqual(self.request("GET", "/x?size=0")[2], b"")

    def test_redirect(self):
        status, hdrs, _ = self.request("GET", "/x?redirect=/echo%3Fa%3D1")
        self.assertEqual(status, 302)
        self.assertEqual(hdrs["location"], "/echo?a=1")
        status, hdrs, _ = self.request(
            "GET", "/x?redirect_to=http://127.0.0.2:1/secret&redirect_status=307")
        self.assertEqual(status, 307)
        self.assertEqual(hdrs["location"], "http://127.0.0.2:1/secret")
        self.assertEqual(self.request("GET", "/x?redirect=/a&redirect_status=200")[0],
                         400)

    def test_redirect_chain(self):
        status, hdrs, _ = self.request("GET", "/redirect/2?latency_ms=1")
        self.assertEqual((status, hdrs["location"]), (302, "/redirect/1?latency_ms=1"))
        status, _, doc = self.get_json("/redirect/0")
        self.assertEqual((status, doc["redirected"]), (200, True))

    @unittest.skipUnless(CURL, "curl not installed")
    def test_redirect_followed_by_curl(self):
        out = subprocess.run(
            [CURL, "-s", "-L", "-o", "/dev/null", "-w", "%{http_code} %{num_redirects}",
             f"http://{HOST}:{self.port}/redirect/3"],
            capture_output=True, text=True, timeout=20)
        self.assertEqual(out.stdout, "200 3")

    def test_body_and_content_type(self):
        status, hdrs, data = self.request("GET", "/x?body=hello%20there")
        self.assertEqual(data, b"hello there")
        self.assertTrue(hdrs["content-type"].startswith("text/plain"))
        _, hdrs, data = self.request("GET", "/x?body=%7B%22a%22%3A1%7D")
        self.assertEqual(json.loads(data), {"a": 1})
        self.assertEqual(hdrs["content-type"], "application/json")
        _, hdrs, _ = self.request("GET", "/x?body=x&content_type=text/csv")
        self.assertEqual(hdrs["content-type"], "text/csv")

    def test_header_injection_is_stripped(self):
        _, hdrs, _ = self.request("GET", "/x?content_type=text/plain%0D%0AX-Evil:%201")
        self.assertNotIn("x-evil", hdrs)

    def test_hang(self):
        path = self.uniq()
        sock = self.connect(timeout=0.6)
        sock.sendall(f"GET {path}?hang=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with self.assertRaises(socket.timeout):
            sock.sock.recv(100)
        self.assertEqual(len(self.log_for(path)), 1)

    def test_hang_times(self):
        path = self.uniq()
        key = uuid.uuid4().hex
        sock = self.connect(timeout=0.6)
        sock.sendall(f"GET {path}?hang_times=1&key={key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with self.assertRaises(socket.timeout):
            sock.sock.recv(100)
        # the same key again: answered; another key: hangs once more
        self.assertEqual(self.request("GET", f"{path}?hang_times=1&key={key}")[0], 200)
        other = self.connect(timeout=0.6)
        other.sendall(f"GET {path}?hang_times=1 HTTP/1.1\r\nHost: x\r\n"
                      f"Idempotency-Key: {uuid.uuid4().hex}\r\n\r\n".encode())
        with self.assertRaises(socket.timeout):
            other.sock.recv(100)
        self.assertEqual(len(self.log_for(path)), 3)

    def test_drop(self):
        sock = self.connect()
        sock.sendall(b"GET /x?drop=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(read_response(sock))

    def test_files(self):
        status, hdrs, data = self.request("GET", "/files/1000")
        self.assertEqual(status, 200)
        self.assertEqual(hdrs["content-type"], "application/octet-stream")
        expected = bytes(FILLER[i % 62] for i in range(1000))
        self.assertEqual(data, expected)
        _, hdrs, data = self.request("GET", "/files/10.pdf")
        self.assertEqual(hdrs["content-type"], "application/pdf")
        self.assertEqual(data, b"0123456789")
        self.assertEqual(self.request("GET", "/files/abc")[0], 400)

    def test_bytes(self):
        status, hdrs, data = self.request("GET", "/bytes/600")
        self.assertEqual(status, 200)
        self.assertEqual(hdrs["content-type"], "application/octet-stream")
        self.assertEqual(data, bytes(i % 256 for i in range(600)))
        self.assertEqual(data.count(0), 3)
        _, hdrs, _ = self.request("GET", "/bytes/3?content_type=image/png")
        self.assertEqual(hdrs["content-type"], "image/png")
        self.assertEqual(self.request("GET", "/bytes/x")[0], 400)

    # -- statistics and reset ------------------------------------------------------

    def test_stats_counts_open_connections(self):
        socks = [self.connect() for _ in range(20)]
        for s in socks:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            read_response(s)
        stats = self.get_json("/__stats")[2]
        self.assertGreaterEqual(stats["connections_open"], 21)
        self.assertGreaterEqual(stats["connections_peak"], stats["connections_open"])
        self.assertGreater(stats["requests"], 0)
        self.assertGreater(stats["by_status"]["200"], 0)

    def test_reset(self):
        self.request("GET", self.uniq())
        self.assertEqual(self.get_json("/__reset", "POST")[0], 200)
        self.assertEqual(self.get_json("/__log")[2], [])
        stats = self.get_json("/__stats")[2]
        self.assertEqual(stats["requests"], 0)
        self.assertEqual(stats["mail"], 0)

    # -- request windows and rate-limit emulation ----------------------------------

    def test_windows_count_requests_and_tokens(self):
        since = int(time.time())
        status, _, doc = self.openai("mock-json", content="y" * 40)
        self.assertEqual(status, 200)
        self.request("GET", self.uniq())
        status, _, w = self.get_json(f"/__windows?since={since}")
        self.assertEqual(status, 200)
        self.assertEqual(w["windowSeconds"], 1)
        self.assertGreaterEqual(sum(x["requests"] for x in w["windows"]), 2)
        self.assertGreaterEqual(sum(x["tokens"] for x in w["windows"]),
                                doc["usage"]["total_tokens"])
        for x in w["windows"]:
            self.assertGreaterEqual(x["start"], since)
        # control requests are not counted
        before = sum(x["requests"] for x in self.get_json(f"/__windows?since={since}")[2]["windows"])
        after = sum(x["requests"] for x in self.get_json(f"/__windows?since={since}")[2]["windows"])
        self.assertEqual(before, after)

    def test_ratelimit_headers_and_429(self):
        try:
            status, _, doc = self.get_json("/__ratelimit?requests_per_minute=3&tokens_per_minute=100000",
                                           "POST")
            self.assertEqual(status, 200)
            self.assertEqual(doc["rateLimit"]["requests_per_minute"], 3)
            status, hdrs, _ = self.openai("mock-json")
            self.assertEqual(status, 200)
            self.assertEqual(hdrs["x-ratelimit-limit-requests"], "3")
            self.assertEqual(hdrs["x-ratelimit-remaining-requests"], "2")
            self.assertTrue(hdrs["x-ratelimit-reset-requests"].endswith("s"))
            self.assertLess(int(hdrs["x-ratelimit-remaining-tokens"]), 100000)
            self.assertEqual(self.openai("mock-json")[0], 200)
            self.assertEqual(self.openai("mock-json")[0], 200)
            status, hdrs, _ = self.openai("mock-json")      # the 4th within a minute
            self.assertEqual(status, 429)
            self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
            self.assertEqual(self.get_json("/__stats")[2]["rate_limited"], 1)
            # fail_429: the next requests get 429 with the Retry-After asked for
            self.get_json("/__ratelimit?fail_429=2&retry_after=7", "POST")
            for _ in range(2):
                status, hdrs, _ = self.request("GET", self.uniq())
                self.assertEqual(status, 429)
                self.assertEqual(hdrs["retry-after"], "7")
            self.assertEqual(self.request("GET", self.uniq())[0], 200)
            self.assertEqual(self.get_json("/__ratelimit?fail_429=x", "POST")[0], 400)
        finally:
            status, _, doc = self.get_json("/__ratelimit", "POST")
            self.assertIsNone(doc["rateLimit"])
        self.assertNotIn("x-ratelimit-limit-requests", self.openai("mock-json")[1])

    def test_ratelimit_scripted_headers(self):
        """header_replies=N: the next N answers carry the headers asked for."""
        try:
            status, _, doc = self.get_json(
                "/__ratelimit?header_replies=1&remaining_requests=0&reset_requests=3", "POST")
            self.assertEqual(status, 200)
            self.assertEqual(doc["headerReplies"], 1)
            status, hdrs, _ = self.openai("mock-json")
            self.assertEqual(status, 200)
            self.assertEqual(hdrs["x-ratelimit-remaining-requests"], "0")
            self.assertEqual(hdrs["x-ratelimit-reset-requests"], "3.000s")
            status, hdrs, _ = self.openai("mock-json")
            self.assertEqual(status, 200)
            self.assertNotIn("x-ratelimit-remaining-requests", hdrs)
            self.assertEqual(self.get_json("/__ratelimit?header_replies=-1", "POST")[0], 400)
        finally:
            self.get_json("/__ratelimit", "POST")

    def test_many_concurrent_connections(self):
        """500 connections each waiting 300 ms finish together, not in series."""
        n = 500

        async def one(i):
            reader, writer = await asyncio.open_connection(HOST, self.port)
            writer.write(f"GET /conc?latency_ms=300&i={i} HTTP/1.1\r\n"
                         f"Host: x\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.close()
            return head.split(b" ")[1]

        async def run():
            return await asyncio.gather(*(one(i) for i in range(n)))

        t0 = time.monotonic()
        codes = asyncio.run(run())
        elapsed = time.monotonic() - t0
        self.assertEqual(codes, [b"200"] * n)
        self.assertLess(elapsed, 3.0)
        self.assertGreaterEqual(self.get_json("/__stats")[2]["connections_peak"], 100)

    # -- LLM providers ---------------------------------------------------------------

    OPENAI_AUTH = {"Authorization": "Bearer sk-openai"}

    def openai(self, model, content="What is the answer?", path="/v1/chat/completions",
               headers=None, **extra):
        doc = {"model": model, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": content}]}
        doc.update(extra)
        return self.post_json(path, doc, self.OPENAI_AUTH if headers is None else headers)

    def test_openai_mock_json(self):
        status, _, doc = self.openai("mock-json", content="x" * 80)
        self.assertEqual(status, 200)
        self.assertEqual(doc["object"], "chat.completion")
        self.assertEqual(doc["model"], "mock-json")
        msg = doc["choices"][0]["message"]
        self.assertEqual(msg["role"], "assistant")
        self.assertEqual(json.loads(msg["content"]), {"answer": 42, "echo": "x" * 50})
        self.assertEqual(doc["choices"][0]["finish_reason"], "stop")
        u = doc["usage"]
        self.assertGreater(u["prompt_tokens"], 0)
        self.assertGreater(u["completion_tokens"], 0)
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])

    def test_openai_models(self):
        content = self.openai("mock-invalid-json")[2]["choices"][0]["message"]["content"]
        self.assertEqual(content, "this is not json {")
        content = self.openai("mock-echo", content=[
            {"type": "text", "text": "part one"}])[2]["choices"][0]["message"]["content"]
        self.assertEqual(content, "part one")
        content = self.openai("gpt-4o")[2]["choices"][0]["message"]["content"]
        self.assertEqual(content, "Hello from mock model gpt-4o")

    def test_json_mode_any_model_name(self):
        # a real flow's model name answers JSON when the request asks for it
        content = self.openai("gpt-4o", content="x" * 80,
                              response_format={"type": "json_object"})[2]["choices"][0]["message"]["content"]
        self.assertEqual(json.loads(content), {"answer": 42, "echo": "x" * 50})
        content = self.openai("gpt-4o", response_format={"type": "json_schema", "json_schema": {}})[2][
            "choices"][0]["message"]["content"]
        self.assertEqual(json.loads(content)["answer"], 42)
        # without JSON mode: the plain default text; a mock-* name keeps its behaviour
        content = self.openai("gpt-4o", response_format={"type": "text"})[2]["choices"][0]["message"]["content"]
        self.assertEqual(content, "Hello from mock model gpt-4o")
        content = self.openai("mock-invalid-json", response_format={"type": "json_object"})[2][
            "choices"][0]["message"]["content"]
        self.assertEqual(content, "this is not json {")
        status, _, _ = self.openai("mock-fail-503", response_format={"type": "json_object"})
        self.assertEqual(status, 503)
        # Gemini: generationConfig.responseMimeType (the real bundles' gemini-* models)
        _, _, doc = self.gemini("gemini-1.5-pro-latest",
                                generationConfig={"responseMimeType": "application/json"})
        self.assertEqual(json.loads(doc["candidates"][0]["content"]["parts"][0]["text"]),
                         {"answer": 42, "echo": "Gemini, hi"})
        _, _, doc = self.gemini("gemini-1.5-pro-latest")
        self.assertEqual(doc["candidates"][0]["content"]["parts"][0]["text"],
                         "Hello from mock model gemini-1.5-pro-latest")
        # Anthropic has no JSON mode: a system prompt asking for JSON
        _, _, doc = self.anthropic("claude-3-5-sonnet", system="Answer in JSON only.")
        self.assertEqual(json.loads(doc["content"][0]["text"])["answer"], 42)
        _, _, doc = self.anthropic("claude-3-5-sonnet")
        self.assertEqual(doc["content"][0]["text"], "Hello from mock model claude-3-5-sonnet")

    def test_noauth_prefix_needs_no_key(self):
        key = uuid.uuid4().hex
        status, _, doc = self.openai("llama3", path="/noauth/v1/chat/completions",
                                     headers={"Idempotency-Key": key})
        self.assertEqual(status, 200)
        self.assertEqual(doc["choices"][0]["message"]["content"], "Hello from mock model llama3")
        entry = self.get_json("/__log?key=" + key)[2][0]
        self.assertIsNone(entry["auth"])
        self.assertNotIn("authorization", entry["headers"])
        # elsewhere a request without a credential is still refused
        status, _, _ = self.openai("llama3", headers={})
        self.assertEqual(status, 401)

    def test_openai_any_prefix_and_azure_key(self):
        status, _, doc = self.openai("mock-echo", content="hi",
                                     path="/openai/v1/chat/completions?api-version=1",
                                     headers={"api-key": "azure"})
        self.assertEqual(status, 200)
        self.assertEqual(doc["choices"][0]["message"]["content"], "hi")

    def test_openai_tools(self):
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}},
                 {"type": "function", "function": {"name": "other", "parameters": {}}}]
        status, _, doc = self.openai("mock-tools", tools=tools)
        choice = doc["choices"][0]
        self.assertEqual(choice["finish_reason"], "tool_calls")
        call = choice["message"]["tool_calls"][0]
        self.assertEqual(call["type"], "function")
        self.assertEqual(call["function"]["name"], "lookup")
        self.assertEqual(json.loads(call["function"]["arguments"]), {"x": 1})
        # after the tool answered, the model replies with text
        messages = [{"role": "user", "content": "go"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call["id"], "content": "42 found"}]
        _, _, doc = self.post_json("/v1/chat/completions",
                                   {"model": "mock-tools", "messages": messages,
                                    "tools": tools}, self.OPENAI_AUTH)
        self.assertEqual(doc["choices"][0]["message"]["content"], "Tool result: 42 found")
        # mock-tools without tools in the request: plain text
        content = self.openai("mock-tools")[2]["choices"][0]["message"]["content"]
        self.assertEqual(content, "Hello from mock model mock-tools")

    def test_openai_auth_missing(self):
        key = uuid.uuid4().hex
        status, _, doc = self.openai("mock-json", headers={"Idempotency-Key": key})
        self.assertEqual(status, 401)
        self.assertEqual(doc["error"]["code"], "invalid_api_key")
        self.assertIsNone(self.get_json("/__log?key=" + key)[2][0]["auth"])

    def test_openai_fail_model_and_status_param(self):
        status, _, doc = self.openai("mock-fail-429")
        self.assertEqual(status, 429)
        self.assertEqual(doc["error"]["type"], "rate_limit_error")
        status, hdrs, doc = self.openai(
            "mock-json", path="/v1/chat/completions?status=503&retry_after=1")
        self.assertEqual(status, 503)
        self.assertEqual(hdrs["retry-after"], "1")
        self.assertIn("message", doc["error"])

    def test_openai_bad_body(self):
        status, _, doc = self.get_json("/v1/chat/completions", "POST", "not json",
                                       self.OPENAI_AUTH)
        self.assertEqual(status, 400)
        self.assertEqual(doc["error"]["type"], "invalid_request_error")

    def test_slow_model(self):
        t0 = time.monotonic()
        status, _, doc = self.openai("mock-slow-300")
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(json.loads(doc["choices"][0]["message"]["content"])["answer"], 42)

    def test_flaky_model_per_idempotency_key(self):
        key = uuid.uuid4().hex
        h = dict(self.OPENAI_AUTH, **{"Idempotency-Key": key})
        codes = [self.openai("mock-flaky-2", headers=h)[0] for _ in range(3)]
        self.assertEqual(codes, [500, 500, 200])
        h2 = dict(self.OPENAI_AUTH, **{"Idempotency-Key": key + "-other"})
        self.assertEqual(self.openai("mock-flaky-2", headers=h2)[0], 500)

    def test_provider_latency_and_fail_times(self):
        key = uuid.uuid4().hex
        path = f"/v1/chat/completions?fail_times=1&key={key}&status=502"
        status, _, doc = self.openai("mock-json", path=path)
        self.assertEqual(status, 502)
        self.assertIn("error", doc)
        self.assertEqual(self.openai("mock-json", path=path)[0], 200)

    ANTHROPIC_AUTH = {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}

    def anthropic(self, model, headers=None, **extra):
        doc = {"model": model, "max_tokens": 100, "system": "be brief",
               "messages": [{"role": "user", "content": [
                   {"type": "text", "text": "Tell me"}]}]}
        doc.update(extra)
        return self.post_json("/v1/messages", doc,
                              self.ANTHROPIC_AUTH if headers is None else headers)

    def test_anthropic_text(self):
        status, _, doc = self.anthropic("mock-json")
        self.assertEqual(status, 200)
        self.assertEqual(doc["type"], "message")
        self.assertEqual(doc["role"], "assistant")
        self.assertEqual(doc["model"], "mock-json")
        self.assertEqual(doc["stop_reason"], "end_turn")
        self.assertEqual(doc["content"][0]["type"], "text")
        self.assertEqual(json.loads(doc["content"][0]["text"])["echo"], "Tell me")
        self.assertGreater(doc["usage"]["input_tokens"], 0)
        self.assertGreater(doc["usage"]["output_tokens"], 0)

    def test_anthropic_tools(self):
        tools = [{"name": "search", "input_schema": {"type": "object"}}]
        status, _, doc = self.anthropic("mock-tools", tools=tools)
        self.assertEqual(doc["stop_reason"], "tool_use")
        block = doc["content"][0]
        self.assertEqual((block["type"], block["name"], block["input"]),
                         ("tool_use", "search", {"x": 1}))
        self.assertTrue(block["id"].startswith("toolu_"))
        _, _, doc = self.anthropic("mock-tools-loop", tools=tools, messages=[
            {"role": "user", "content": [{"type": "tool_result",
                                         "tool_use_id": block["id"],
                                         "content": "done"}]}])
        self.assertEqual(doc["content"][0]["type"], "tool_use")

    def test_anthropic_errors(self):
        status, _, doc = self.anthropic("mock-json", headers={})
        self.assertEqual(status, 401)
        self.assertEqual(doc, {"type": "error", "error": {
            "type": "authentication_error", "message": "missing API key"}})
        status, _, doc = self.anthropic("mock-fail-529")
        self.assertEqual(status, 529)
        self.assertEqual(doc["error"]["type"], "overloaded_error")

    def gemini(self, model, query="?key=g-key", headers=None, **extra):
        doc = {"systemInstruction": {"parts": [{"text": "be brief"}]},
               "contents": [{"role": "user", "parts": [{"text": "Gemini, hi"}]}]}
        doc.update(extra)
        return self.post_json(f"/v1beta/models/{model}:generateContent{query}",
                              doc, headers)

    def test_gemini_text_and_key_logged(self):
        path = "/v1beta/models/mock-echo:generateContent"
        status, _, doc = self.gemini("mock-echo", query="?key=g-secret-1")
        self.assertEqual(status, 200)
        cand = doc["candidates"][0]
        self.assertEqual(cand["content"]["parts"][0]["text"], "Gemini, hi")
        self.assertEqual(cand["finishReason"], "STOP")
        u = doc["usageMetadata"]
        self.assertEqual(u["totalTokenCount"],
                         u["promptTokenCount"] + u["candidatesTokenCount"])
        self.assertEqual(self.log_for(path)[-1]["auth"], "g-secret-1")
        with open(self.log_file) as f:
            self.assertIn("g-secret-1", f.read())
        status, _, _ = self.gemini("mock-echo", query="",
                                   headers={"x-goog-api-key": "g-secret-2"})
        self.assertEqual(status, 200)
        self.assertEqual(self.log_for(path)[-1]["auth"], "g-secret-2")

    def test_gemini_tools(self):
        tools = [{"functionDeclarations": [{"name": "get_weather"}]}]
        _, _, doc = self.gemini("mock-tools", tools=tools)
        part = doc["candidates"][0]["content"]["parts"][0]
        self.assertEqual(part, {"functionCall": {"name": "get_weather", "args": {"x": 1}}})

    def test_gemini_errors(self):
        status, _, doc = self.gemini("mock-json", query="")
        self.assertEqual(status, 401)
        self.assertEqual(doc["error"]["status"], "UNAUTHENTICATED")
        status, _, doc = self.gemini("mock-fail-503")
        self.assertEqual((status, doc["error"]["code"], doc["error"]["status"]),
                         (503, 503, "UNAVAILABLE"))

    def test_gemini_fail_times_ignores_api_key(self):
        # ?key= is the API key on Gemini paths: the failure counter uses
        # fail_key (or Idempotency-Key) instead.
        fk = uuid.uuid4().hex
        q = f"?key=same&fail_times=1&fail_key={fk}"
        self.assertEqual([self.gemini("mock-json", query=q)[0] for _ in range(2)],
                         [500, 200])

    def test_bedrock_converse_and_invoke(self):
        auth = {"Authorization": "AWS4-HMAC-SHA256 Credential=x"}
        doc = {"messages": [{"role": "user", "content": [{"text": "bedrock hi"}]}],
               "toolConfig": {"tools": [{"toolSpec": {"name": "t"}}]}}
        status, _, out = self.post_json("/model/mock-echo/converse", doc, auth)
        self.assertEqual(status, 200)
        self.assertEqual(out["output"]["message"]["content"][0]["text"], "bedrock hi")
        self.assertEqual(out["usage"]["totalTokens"],
                         out["usage"]["inputTokens"] + out["usage"]["outputTokens"])
        _, _, out = self.post_json("/model/us.amazon.mock-tools/converse", doc, auth)
        self.assertEqual(out["stopReason"], "tool_use")
        self.assertEqual(out["output"]["message"]["content"][0]["toolUse"]["name"], "t")
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
                "messages": [{"role": "user", "content": "inv"}]}
        _, _, out = self.post_json("/model/anthropic.mock-echo/invoke", body, auth)
        self.assertEqual(out["content"][0], {"type": "text", "text": "inv"})
        self.assertEqual(self.post_json("/model/mock-echo/converse", doc)[0], 401)

    # -- MCP ---------------------------------------------------------------------------

    def mcp(self, doc):
        return self.post_json("/mcp", doc, {"Accept": "application/json, text/event-stream"})

    def test_mcp_tools_call(self):
        status, _, doc = self.mcp({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                   "params": {"name": "lookup",
                                              "arguments": {"b": 2, "a": "x"}}})
        self.assertEqual(status, 200)
        self.assertEqual(doc, {"jsonrpc": "2.0", "id": 7, "result": {"content": [
            {"type": "text", "text": 'called lookup with {"a":"x","b":2}'}]}})

    def test_mcp_echo_and_sse(self):
        call = {"jsonrpc": "2.0", "id": "k/1", "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hi", "n": [1, 2]}}}
        _, _, doc = self.mcp(call)
        self.assertEqual(doc["result"]["structuredContent"], {"text": "hi", "n": [1, 2]})
        status, hdrs, data = self.request(
            "POST", "/mcp?sse=1", json.dumps(call),
            {"Content-Type": "application/json",
             "Accept": "application/json, text/event-stream"})
        self.assertEqual((status, hdrs["content-type"]), (200, "text/event-stream"))
        events = [e for e in data.decode().split("\r\n\r\n") if "data:" in e]
        self.assertEqual(len(events), 2)
        self.assertEqual(json.loads(events[0].split("data: ", 1)[1])["method"],
                         "notifications/message")
        answer = json.loads("\n".join(line[6:] for line in events[1].split("\r\n")
                                      if line.startswith("data: ")))
        self.assertEqual(answer, doc)

    def test_mcp_list_initialize_and_errors(self):
        doc = self.mcp({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})[2]
        self.assertEqual(len(doc["result"]["tools"]), 2)
        self.assertTrue(all("inputSchema" in t for t in doc["result"]["tools"]))
        doc = self.mcp({"jsonrpc": "2.0", "id": 2, "method": "initialize",
                        "params": {"protocolVersion": "2025-03-26"}})[2]
        self.assertEqual(doc["result"]["protocolVersion"], "2025-03-26")
        doc = self.mcp({"jsonrpc": "2.0", "id": "a", "method": "bogus"})[2]
        self.assertEqual(doc, {"jsonrpc": "2.0", "id": "a", "error": {
            "code": -32601, "message": "Method not found"}})
        status, _, doc = self.get_json("/mcp", "POST", "{oops")
        self.assertEqual((status, doc["error"]["code"]), (400, -32700))
        doc = self.mcp({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "rpc_error"}})[2]
        self.assertEqual(doc["error"]["code"], -32603)
        doc = self.mcp({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                        "params": {"name": "tool_error", "arguments": {}}})[2]
        self.assertTrue(doc["result"]["isError"])

    def test_mcp_stateful_chosen_session_id(self):
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": "2025-03-26"}})
        status, hdrs, _ = self.request("POST", "/mcp-stateful?session_id=%01chosen%01", init,
                                       {"Content-Type": "application/json"})
        self.assertEqual((status, hdrs["mcp-session-id"]), (200, "\x01chosen\x01"))
        status, _, _ = self.request(
            "POST", "/mcp-stateful",
            json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            {"Content-Type": "application/json", "Mcp-Session-Id": "\x01chosen\x01"})
        self.assertEqual(status, 202)

    def test_mcp_notification_and_batch(self):
        status, _, data = self.request(
            "POST", "/mcp", json.dumps({"jsonrpc": "2.0",
                                        "method": "notifications/initialized"}),
            {"Content-Type": "application/json"})
        self.assertEqual((status, data), (202, b""))
        _, _, doc = self.mcp([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              {"jsonrpc": "2.0", "method": "notifications/x"},
                              {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}])
        self.assertEqual([d["id"] for d in doc], [1, 2])

    # -- SMTP ----------------------------------------------------------------------------

    def mail_for(self, rcpt):
        return [m for m in self.get_json("/__mail")[2] if rcpt in m["rcpt_to"]]

    def test_smtp_with_smtplib(self):
        rcpt = f"{uuid.uuid4().hex}@example.org"
        msg = ("Subject: test\r\n\r\nline one\r\n.starts with a dot\r\n"
               "..two dots\r\n.\r\nlast\r\n")
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as s:
            s.ehlo("tester")
            self.assertTrue(s.has_extn("8bitmime"))
            self.assertEqual(s.noop()[0], 250)
            refused = s.sendmail("from@example.org", [rcpt, "cc@example.org"], msg)
            self.assertEqual(refused, {})
        mails = self.mail_for(rcpt)
        self.assertEqual(len(mails), 1)
        m = mails[0]
        self.assertEqual(m["mail_from"], "from@example.org")
        self.assertEqual(m["rcpt_to"], [rcpt, "cc@example.org"])
        self.assertEqual(m["data"], msg)    # dot-stuffing undone
        self.assertEqual(m["helo"], "tester")

    def test_smtp_reject_rset_and_sequence(self):
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as s:
            s.ehlo("t")
            self.assertEqual(s.docmd("DATA")[0], 503)
            self.assertEqual(s.docmd("RCPT TO:<a@b>")[0], 503)
            self.assertEqual(s.docmd("MAIL FROM:<a@b>")[0], 250)
            self.assertEqual(s.docmd("RCPT TO:<reject-me@b>")[0], 550)
            self.assertEqual(s.docmd("RSET")[0], 250)
            self.assertEqual(s.docmd("RCPT TO:<x@b>")[0], 503)
            self.assertEqual(s.docmd("FROB")[0], 500)
            self.assertEqual(s.docmd("MAIL FROM:bad")[0], 501)

    def test_smtp_auth_login(self):
        rcpt = f"{uuid.uuid4().hex}@example.org"
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as s:
            s.login("mailer", "secret")
            s.sendmail("a@example.org", [rcpt], "Subject: x\r\n\r\nhi\r\n")
        m = self.mail_for(rcpt)[0]
        self.assertEqual(m["auth_user"], "mailer")
        self.assertEqual(m["auth_password"], "secret")

    def test_smtp_auth_plain(self):
        rcpt = f"{uuid.uuid4().hex}@example.org"
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as s:
            s.ehlo("t")
            token = base64.b64encode(b"\0plainuser\0pw").decode()
            self.assertEqual(s.docmd("AUTH PLAIN " + token)[0], 235)
            self.assertEqual(s.docmd("AUTH PLAIN")[0], 334)
            token = base64.b64encode(b"\0plainuser\0pw-2").decode()
            self.assertEqual(s.docmd(token)[0], 235)
            s.sendmail("a@example.org", [rcpt], "Subject: x\r\n\r\nhi\r\n")
        m = self.mail_for(rcpt)[0]
        self.assertEqual((m["auth_user"], m["auth_password"]), ("plainuser", "pw-2"))

    def test_smtp_no_login(self):
        rcpt = f"{uuid.uuid4().hex}@example.org"
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as s:
            s.sendmail("a@example.org", [rcpt], "Subject: x\r\n\r\nhi\r\n")
        m = self.mail_for(rcpt)[0]
        self.assertIsNone(m["auth_user"])
        self.assertIsNone(m["auth_password"])

    def test_smtp_hold_first_message(self):
        rcpt = f"hold-{uuid.uuid4().hex}@example.org"
        s = smtplib.SMTP(HOST, self.smtp_port, timeout=10)
        try:
            s.ehlo("t")
            self.assertEqual(s.docmd("MAIL FROM:<a@example.org>")[0], 250)
            self.assertEqual(s.docmd(f"RCPT TO:<{rcpt}>")[0], 250)
            self.assertEqual(s.docmd("DATA")[0], 354)
            s.send("Subject: x\r\n\r\nfirst\r\n.\r\n")
            s.sock.settimeout(1.0)
            with self.assertRaises(smtplib.SMTPServerDisconnected):
                s.getreply()
        finally:
            s.close()
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as s:
            self.assertEqual(s.sendmail("a@example.org", [rcpt], "Subject: x\r\n\r\nagain\r\n"), {})
        self.assertEqual([m["data"] for m in self.mail_for(rcpt)],
                         ["Subject: x\r\n\r\nfirst\r\n", "Subject: x\r\n\r\nagain\r\n"])

    @unittest.skipUnless(CURL, "curl not installed")
    def test_smtp_with_curl(self):
        rcpt = f"{uuid.uuid4().hex}@example.org"
        body = "From: a@example.org\r\nSubject: curl\r\n\r\nhello\r\n.dotted\r\n"
        path = os.path.join(self.tmp.name, "mail.txt")
        with open(path, "w", newline="") as f:
            f.write(body)
        out = subprocess.run(
            [CURL, "-sS", f"smtp://{HOST}:{self.smtp_port}/client.example",
             "--mail-from", "a@example.org", "--mail-rcpt", rcpt,
             "--mail-rcpt", "b@example.org", "-T", path],
            capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        m = self.mail_for(rcpt)[0]
        self.assertEqual(m["data"], body)
        self.assertEqual(m["helo"], "client.example")
        self.assertEqual(m["rcpt_to"], [rcpt, "b@example.org"])

    @unittest.skipUnless(CURL, "curl not installed")
    def test_curl_chunked_upload_with_expect(self):
        path = os.path.join(self.tmp.name, "up.bin")
        data = os.urandom(300000).hex()
        with open(path, "w") as f:
            f.write(data)
        out = subprocess.run(
            [CURL, "-sS", "-T", path, "-H", "Transfer-Encoding: chunked",
             "-H", "Expect: 100-continue",
             f"http://{HOST}:{self.port}/echo?via=curl"],
            capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        doc = json.loads(out.stdout)
        self.assertEqual(doc["body"], data)
        self.assertEqual(doc["headers"]["transfer-encoding"], "chunked")

    @unittest.skipUnless(CURL, "curl not installed")
    def test_curl_keepalive_many_urls(self):
        path = self.uniq()
        urls = [f"http://{HOST}:{self.port}{path}?n={i}" for i in range(5)]
        out = subprocess.run([CURL, "-sS", *urls], capture_output=True, timeout=20)
        self.assertEqual(out.returncode, 0)
        entries = self.log_for(path)
        self.assertEqual(len(entries), 5)
        self.assertEqual(len({e["conn"] for e in entries}), 1)


class ProcessTest(unittest.TestCase):
    """Start/stop behaviour, each with a server of its own."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="allma-mock-test-")
        self.addCleanup(self.tmp.cleanup)

    def start(self, *extra):
        proc, ports, port_file, log_file = start_server(self.tmp.name, *extra)
        self.addCleanup(self._stop, proc)
        return proc, ports, port_file, log_file

    @staticmethod
    def _stop(proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()

    def _signal_stops(self, sig):
        proc, ports, port_file, log_file = self.start()
        # an idle keep-alive connection and a hung request must not block exit
        idle = socket.create_connection((HOST, ports["http"]))
        self.addCleanup(idle.close)
        hung = socket.create_connection((HOST, ports["http"]))
        self.addCleanup(hung.close)
        hung.sendall(b"GET /x?hang=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        conn = http.client.HTTPConnection(HOST, ports["http"], timeout=10)
        conn.request("GET", "/before-stop")
        conn.getresponse().read()
        conn.close()
        proc.send_signal(sig)
        self.assertEqual(proc.wait(timeout=10), 0)
        self.assertFalse(os.path.exists(port_file))
        with open(log_file) as f:
            paths = [json.loads(line)["path"] for line in f]
        self.assertEqual(paths, ["/x", "/before-stop"])

    def test_sigterm_stops_cleanly(self):
        self._signal_stops(signal.SIGTERM)

    def test_sigint_stops_cleanly(self):
        self._signal_stops(signal.SIGINT)

    def test_idle_exit(self):
        t0 = time.monotonic()
        proc, ports, _, _ = self.start("--idle-exit-seconds", "1")
        # a request postpones the exit
        time.sleep(0.6)
        conn = http.client.HTTPConnection(HOST, ports["http"], timeout=10)
        conn.request("GET", "/keepalive")
        conn.getresponse().read()
        conn.close()
        self.assertIsNone(proc.poll())
        self.assertEqual(proc.wait(timeout=10), 0)
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)

    def test_no_idle_exit_by_default(self):
        proc, _, _, _ = self.start()
        time.sleep(1.5)
        self.assertIsNone(proc.poll())

    def test_max_connections(self):
        proc, ports, _, _ = self.start("--max-connections", "2")
        keep = [RawConn(ports["http"]) for _ in range(2)]
        for s in keep:
            self.addCleanup(s.close)
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s)[0], 200)
        extra = RawConn(ports["http"])
        self.addCleanup(extra.close)
        self.assertEqual(read_response(extra)[0], 503)

    def test_no_smtp(self):
        port_file = os.path.join(self.tmp.name, "nosmtp.port")
        proc = subprocess.Popen([sys.executable, SERVER, "--smtp-port", "-1",
                                 "--port-file", port_file],
                                stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait()))
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(port_file) as f:
            ports = json.load(f)
        self.assertIsNone(ports["smtp"])
        proc.terminate()
        self.assertEqual(proc.wait(timeout=10), 0)


if __name__ == "__main__":
    unittest.main()
