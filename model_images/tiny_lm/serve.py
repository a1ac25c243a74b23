"""A minimal OpenAI-compatible server for the tiny GPT: /v1/models, /v1/completions and
/v1/chat/completions, streamed (SSE, one chunk per generated token) or whole.

PYTHONPATH=model_images python model_images/tiny_lm/serve.py --checkpoint tiny_lm.pt [--port 0]

One thread per request (the standard library's ThreadingHTTPServer), torch on one thread each.
Prints `serving NAME on http://HOST:PORT` once listening; with --log, one JSON line per answered
request (its prompt and the tokens sent), which the tests compare with what the client counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from model import generate, load


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # no line per request
        pass

    def authorized(self) -> bool:
        """With --api-key-file, OpenAI's Bearer token or a 401."""
        key = self.server.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self.answer(401, error("a missing or wrong API key"))
        return False

    def do_GET(self) -> None:
        if not self.authorized():
            return None
        if self.path != "/v1/models":
            return self.answer(404, error(f"no route {self.path}"))
        models = [{"id": self.server.name, "object": "model", "owned_by": "deepspark"}]
        self.answer(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        if not self.authorized():
            return None
        chat = self.path == "/v1/chat/completions"
        if not chat and self.path != "/v1/completions":
            return self.answer(404, error(f"no route {self.path}"))
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompt = prompt_of(body, chat)
            max_tokens = int(body.get("max_tokens") or 16)
            temperature = float(body.get("temperature", 1.0))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return self.answer(400, error(f"bad request: {exc}"))
        if body.get("model") != self.server.name:
            return self.answer(404, error(f"model {body.get('model')!r} is not served"))
        rng = torch.Generator().manual_seed(int(body.get("seed") or 0))
        ids = self.server.chars.encode(prompt)
        tokens = generate(self.server.model, ids, max_tokens, temperature, rng)
        texts = (self.server.chars.decode([t]) for t in tokens)
        reply = Reply(self.server.name, chat)
        usage = {"prompt_tokens": len(ids), "completion_tokens": max_tokens,
                 "total_tokens": len(ids) + max_tokens}  # fmt: skip
        if body.get("stream"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            try:
                sent = self.stream(reply, texts, usage if with_usage else None)
            except ConnectionError:  # the client went away: nothing more to send
                return
        else:
            self.answer(200, reply.whole("".join(texts), usage))
            sent = max_tokens
        self.server.record({"prompt": prompt, "completion_tokens": sent, "chat": chat})

    def stream(self, reply: Reply, texts: Iterator[str], usage: dict | None) -> int:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        for text in texts:
            self.event(reply.chunk(text))
            sent += 1
        self.event(reply.chunk("", "length"))
        if usage:  # OpenAI's last chunk when asked for: usage, no choices
            self.event({**reply.chunk(""), "choices": [], "usage": usage})
        self.write_chunk(b"data: [DONE]\n\n")
        self.write_chunk(b"")
        return sent

    def event(self, data: dict) -> None:
        self.write_chunk(f"data: {json.dumps(data)}\n\n".encode())

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def prompt_of(body: dict, chat: bool) -> str:
    if chat:  # the messages' contents, one after another: the model knows no roles
        return "\n".join(str(m["content"]) for m in body["messages"])
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise ValueError("prompt must be one string")
    return prompt


class Reply:
    """One completion's answer in OpenAI's shapes: its stream's chunks (one id), or whole."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model, self.chat = model, chat
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(self, text: str, finish: str | None = None) -> dict:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self.chat:
            choice["delta"] = {"content": text} if text else {}
        else:
            choice.update(text=text, logprobs=None)
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "choices": [choice]}  # fmt: skip

    def whole(self, text: str, usage: dict) -> dict:
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "choices": [choice], "usage": usage}  # fmt: skip


def error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error"}}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: socketserver's 5 resets a burst's connections

    def __init__(self, address: tuple[str, int], args: argparse.Namespace) -> None:
        super().__init__(address, Handler)
        self.model, self.chars = load(args.checkpoint)
        self.name, self.log = args.name, args.log
        self.api_key = args.api_key_file.read_text().strip() if args.api_key_file else None
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client gone is no error
            super().handle_error(request, client_address)

    def record(self, line: dict) -> None:
        if self.log:
            with self.lock, self.log.open("a") as f:
                f.write(json.dumps(line) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="train.py's output")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: a free port")
    parser.add_argument("--name", default="tiny-lm", help="the model name clients ask for")
    parser.add_argument("--log", type=Path, help="one JSON line per answered request")
    parser.add_argument("--api-key-file", type=Path, help="answer only this key (a Bearer token)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # requests run in parallel threads; one torch thread each
    server = Server((args.host, args.port), args)
    host, port = server.server_address[:2]
    print(f"serving {args.name} on http://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
