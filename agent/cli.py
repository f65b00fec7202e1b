"""`vision-agent chat`: a terminal client for the agent over `WS /ws/chat`, with a live progress bar.

    vision-agent chat --url http://127.0.0.1:8000 --email E --password P [--register]
                      [--session ID] [-m MESSAGE ...] [--no-follow]

Interactive by default: type messages; `/image PATH [JOB]` runs inference on an image with the
current (or given) job (`POST /api/v1/jobs/{id}/inference`), `/quit` (or Ctrl-D) leaves. The
replies are printed as they come; jobs the chat starts get a rich progress bar (epoch x/N, with the
batch fraction) and one metric line per finished epoch.

With `-m` the messages are sent one after the other (each waits for its reply), then — unless
`--no-follow` — the client waits until the jobs it launched end, and exits 0 when they completed,
1 when one failed or stopped, 2 on connection or sign-in errors. `--email`/`--password` default to
VTA_EMAIL / VTA_PASSWORD.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from trainer_runtime.events import TERMINAL_STATUSES

PROG = "vision-agent chat"
TERMINAL = (*TERMINAL_STATUSES, "deleted")  # over, or gone
"""How a followed job ends ("deleted": the server sent its final `deleted` progress frame)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of `vision-agent chat`; email and password default to the environment."""
    p = argparse.ArgumentParser(prog=PROG, description="Chat with the Vision Training Agent in a terminal.")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server URL (default: %(default)s)")
    p.add_argument("--email", default=os.environ.get("VTA_EMAIL"), help="account email (default: $VTA_EMAIL)")
    p.add_argument("--password", default=os.environ.get("VTA_PASSWORD"), help="password (default: $VTA_PASSWORD)")
    p.add_argument("--register", action="store_true", help="create the account first when it does not exist")
    p.add_argument("--session", default=None, help="continue this chat session id")
    p.add_argument("-m", "--message", action="append", default=[], help="send this message (repeatable); no prompt")
    p.add_argument("--no-follow", action="store_true", help="with -m: do not wait for launched jobs to finish")
    p.add_argument("--timeout", type=float, default=3600.0, help="with -m: give up waiting after this many seconds")
    return p


def sign_in(url: str, email: str, password: str, register: bool) -> str:
    """An access token for `email` (registering the account first when `register` is set; an existing
    account is fine). Raises RuntimeError with the server's reason when either step fails."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        if register:
            r = client.post("/api/v1/auth/register", json={"email": email, "password": password})
            if r.status_code not in (201, 409):
                raise RuntimeError(f"register failed: {r.status_code} {r.text}")
        r = client.post("/api/v1/auth/token", data={"username": email, "password": password})
        if r.status_code != 200:
            raise RuntimeError(f"sign-in failed: {r.status_code} {r.json().get('detail', r.text)}")
        return str(r.json()["access_token"])


def stream_ticket(url: str, token: str, kind: str = "chat") -> str:
    """A single-use ticket that opens one stream (`POST /api/v1/stream-tickets`), so the bearer
    token never travels in the socket's URL (which servers and proxies log)."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        r = client.post("/api/v1/stream-tickets", json={"kind": kind}, headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 201:
            raise RuntimeError(f"could not open the chat stream: {r.status_code} {r.text[:200]}")
        return str(r.json()["ticket"])


def ws_url(url: str) -> str:
    """The WebSocket base URL for an http(s) server URL (ws:// or wss://); any other URL unchanged."""
    base = url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    return base


class Client:
    """Prints what the server sends and keeps the progress bars (see the module doc)."""

    def __init__(self, url: str, token: str, session_id: str | None, console: Any) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn

        self.url = url
        self.token = token
        self.session_id = session_id
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self.bars: dict[int, Any] = {}
        self.status: dict[int, str] = {}
        self.launched: list[int] = []
        self.current_job: int | None = None
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.job_ended = asyncio.Event()

    # ------------------------------------------------------------------ incoming
    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "reply":
            self.session_id = msg.get("session_id") or self.session_id
            self.progress.console.print(f"[bold cyan]agent>[/] {msg.get('reply', '')}")
            if msg.get("job_id"):
                self.current_job = int(msg["job_id"])
            if msg.get("launched") and msg.get("job_id"):
                self.launched.append(int(msg["job_id"]))
                self.bar(int(msg["job_id"]))
            self.replies.put_nowait(msg)
        elif kind == "progress":
            self.on_progress(msg)
        elif kind == "error":
            self.progress.console.print(f"[bold red]error:[/] {msg.get('detail')}")
            self.replies.put_nowait(msg)

    def bar(self, job_id: int) -> Any:
        if job_id not in self.bars:
            self.bars[job_id] = self.progress.add_task(f"job {job_id}", total=None, info="queued")
        return self.bars[job_id]

    def on_progress(self, msg: dict[str, Any]) -> None:
        job_id = int(msg["job_id"])
        task = self.bar(job_id)
        data = msg.get("data") or {}
        etype = msg.get("event_type")
        if etype == "status":
            status = str(data.get("status"))
            self.status[job_id] = status
            self.progress.update(task, info=status)
            if status in TERMINAL:
                if status == "completed":
                    total = self.progress.tasks[task].total
                    if total:
                        self.progress.update(task, completed=total)
                self.progress.console.print(f"[bold]job {job_id} {status}[/] {data.get('message') or ''}".rstrip())
                self.progress.stop_task(task)
                self.job_ended.set()
        elif etype == "deleted":  # the job was deleted: no more events will come
            self.status[job_id] = "deleted"
            self.progress.update(task, info="deleted")
            self.progress.console.print(f"[bold]job {job_id} deleted[/]")
            self.progress.stop_task(task)
            self.job_ended.set()
        elif etype == "batch":
            epochs = data.get("epochs") or self.progress.tasks[task].total
            batches = data.get("batches") or 0
            epoch_no = int(data.get("epoch") or 1)
            if batches:
                done = (epoch_no - 1) + int(data.get("batch") or 0) / batches
                self.progress.update(
                    task, total=epochs, completed=done, info=f"epoch {epoch_no} batch {data.get('batch')}"
                )
        elif etype == "epoch":
            epoch, epochs = data.get("epoch"), data.get("epochs")
            self.progress.update(task, total=epochs, completed=epoch, info=f"epoch {epoch}/{epochs}")
            metrics = data.get("metrics") or {}
            line = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            eta = data.get("eta_s")
            tail = f"  eta {eta:.0f}s" if isinstance(eta, int | float) else ""
            self.progress.console.print(f"  job {job_id} epoch {epoch}/{epochs}  {line}{tail}")
        elif etype == "error":
            self.progress.console.print(f"[red]job {job_id} error:[/] {data.get('message')}")

    # ------------------------------------------------------------------ outgoing
    async def send(self, ws: Any, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "message", "message": text}
        if self.session_id:
            body["session_id"] = self.session_id
        await ws.send(json.dumps(body, ensure_ascii=False))
        return await self.replies.get()

    def image(self, args: list[str]) -> None:
        if not args:
            self.progress.console.print("usage: /image PATH [JOB]")
            return
        path = Path(args[0]).expanduser()
        job = int(args[1]) if len(args) > 1 else self.current_job
        if job is None:
            self.progress.console.print("no job yet: start one, or give its number: /image PATH JOB")
            return
        try:
            with httpx.Client(base_url=self.url, timeout=120.0) as client, path.open("rb") as fh:
                r = client.post(
                    f"/api/v1/jobs/{job}/inference",
                    files={"file": (path.name, fh, "application/octet-stream")},
                    headers={"Authorization": f"Bearer {self.token}"},
                )
        except OSError as exc:
            self.progress.console.print(f"[red]{exc}[/]")
            return
        if r.status_code != 200:
            self.progress.console.print(f"[red]inference failed ({r.status_code}):[/] {r.text[:300]}")
            return
        body = r.json()
        self.progress.console.print(f"[bold cyan]job {job}>[/] {json.dumps(body.get('predictions'))[:2000]}")

    def outcome(self) -> int:
        bad = [j for j in self.launched if self.status.get(j) in ("failed", "stopped", "deleted")]
        return 1 if bad else 0


async def _reader(ws: Any, client: Client) -> None:
    async for raw in ws:
        with contextlib.suppress(ValueError):
            client.on_message(json.loads(raw))


async def run(url: str, token: str, session_id: str | None, messages: list[str], follow: bool, timeout: float) -> int:
    """Chat over the WebSocket: send `messages` (and, with `follow`, wait up to `timeout` s for the jobs
    they launch) or, with none, prompt interactively. Returns 1 when a launched job failed, was
    stopped or deleted, else 0."""
    from rich.console import Console
    from websockets.asyncio.client import connect

    console = Console()
    client = Client(url, token, session_id, console)
    ticket = await asyncio.to_thread(stream_ticket, url, token)
    async with connect(f"{ws_url(url)}/ws/chat?ticket={ticket}", max_size=2**22) as ws:
        reader = asyncio.create_task(_reader(ws, client))
        try:
            with client.progress:
                if messages:
                    for text in messages:
                        client.progress.console.print(f"[bold green]you>[/] {text}")
                        await client.send(ws, text)
                    if follow and client.launched:
                        await asyncio.wait_for(_wait_jobs(client), timeout)
                else:
                    await _interactive(ws, client)
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
    if client.session_id:
        console.print(f"[dim]session {client.session_id}[/]")
    return client.outcome()


async def _wait_jobs(client: Client) -> None:
    while not all(client.status.get(j) in TERMINAL for j in client.launched):
        client.job_ended.clear()
        await client.job_ended.wait()


async def _interactive(ws: Any, client: Client) -> None:
    console = client.progress.console
    console.print('Type a message ("help" for examples), /image PATH [JOB], /quit to leave.')
    while True:
        try:
            line = await asyncio.to_thread(input, "you> ")
        except (EOFError, KeyboardInterrupt):
            return
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line.startswith("/image"):
            client.image(line.split()[1:])
            continue
        await client.send(ws, line)


def main(argv: Sequence[str] | None = None) -> int:
    """The `vision-agent chat` entry point: exit status 0 on success, 1 when a launched job did not
    complete or the wait timed out, 2 on bad arguments or a sign-in or connection error."""
    from websockets.exceptions import WebSocketException

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.email or not args.password:
        print(f"{PROG}: --email and --password (or VTA_EMAIL / VTA_PASSWORD) are required", file=sys.stderr)
        return 2
    try:
        token = sign_in(args.url, args.email, args.password, args.register)
        return asyncio.run(
            run(args.url, token, args.session, list(args.message), not args.no_follow, float(args.timeout))
        )
    except TimeoutError:
        print(f"{PROG}: gave up waiting for the jobs to finish", file=sys.stderr)
        return 1
    except (RuntimeError, httpx.HTTPError, OSError, WebSocketException) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
