"""The `olane` command: run a node, call or stream a method headless, benchmark,
or open the console (the default). stdout is data, stderr is narrative; exit 0
on success, 1 on an error answer, 2 when the target cannot be reached or named."""
from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from typing import Any, NoReturn

import click


EXIT_ERROR = 1
EXIT_UNREACHABLE = 2  # also: a bad option value
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def _dumps(value: Any) -> str:
    from node_runtime.codec import json_default  # lazy: node_runtime takes seconds to import

    return json.dumps(value, ensure_ascii=False, default=json_default)


class _OlaneGroup(click.Group):
    """Ctrl-C anywhere in a command (imports included) -> exit 130, no traceback
    (click would print "Aborted!" and exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _quiet_exit(EXIT_INTERRUPTED)
        finally:
            # the process ends next: what lives now moves to the permanent generation, which
            # the interpreter's last full collection skips (0.3 s of every node's stop; 1 s
            # when a network's nodes all stop at once on a busy machine, and `olane console
            # --network` waits for them). Logs and files are flushed and closed by then.
            import gc

            gc.freeze()


@click.group(cls=_OlaneGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """olane nodes and their console. With no command, opens the console on an embedded node."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(console)


# --- node ----------------------------------------------------------------------


@main.command()
@click.option("--address", default=None, help="olane address: of the tool when one is served, else the parent of all (o://lab -> o://lab/demo ...)")
@click.option("--listen", "listen", multiple=True, default=["/ip4/127.0.0.1/tcp/0"], show_default=True, help="multiaddr to listen on (repeatable)")
@click.option("--seed", default=None, help="text seed for a stable identity (peer id)")
@click.option("--key", "key_file", default=None, metavar="FILE", help="key file for a stable identity (32 bytes, raw or 64 hex digits; see `olane id --new-key`)")
@click.option("--tools", "tool_names", default=None, help="comma-separated tools to serve: demo,sqlite,files,metrics (default: all)")
@click.option("--files-root", type=click.Path(file_okay=False), default=None, help="root folder of the files tool")
@click.option("--sqlite-db", type=click.Path(dir_okay=False), default=None, help="SQLite database file of the sqlite tool")
@click.option("--allow-writes", is_flag=True, help="let the sqlite tool run statements that write")
@click.option("--sqlite-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              metavar="SECONDS", help="seconds one SQLite statement may run; then the call answers 4017 TIMEOUT")
@click.option("--allow", "allow_ids", default=None, metavar="PEER_ID[,PEER_ID...]",
              help="admit only these peer ids (others are refused at connection time)")
@click.option("--allow-file", type=click.Path(dir_okay=False), default=None,
              help="admit only the peer ids in FILE (one a line, # comments); re-read on SIGHUP")
@click.option("--leader", "leader_ma", default=None, help="join the network of the leader at this multiaddr")
@click.option("--parent", default="o://leader", show_default=True, help="with --leader: the address to nest under")
@click.option("--admin", "admins", multiple=True, metavar="PEER_ID",
              help="a peer id that may list and tap every stream here (repeatable; each caller sees its own anyway)")
def node(address, listen, seed, key_file, tool_names, files_root, sqlite_db, allow_writes, sqlite_timeout, allow_ids,
         allow_file, leader_ma, parent, admins) -> None:
    """Serve tools; print `listening <multiaddr>` once ready; stop on SIGINT/SIGTERM."""
    import trio

    from node_runtime import Node

    seed, key = _identity(seed, key_file)
    tools = _build_tools(tool_names, address, files_root, sqlite_db, allow_writes, sqlite_timeout)
    units = []
    if leader_ma:
        from node_runtime.joining import nest

        tools, units = nest(tools, parent)
    allowed = _allowlist(allow_ids, allow_file)
    if allowed is None and any(not _is_loopback(ma) for ma in listen):
        click.echo("warning: listening beyond 127.0.0.1 with no allowlist: anyone who can reach the port may "
                   "call every method (see --allow / --allow-file)", err=True)

    async def serve() -> None:
        async with Node(tools, seed=seed, key=key, listen=listen, allow=allowed, admins=admins) as n, \
                _maybe_joined(n, leader_ma, parent, units):
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                print(f"listening {n.listen_addrs[0]}", flush=True)
                for tool in n.tools:
                    click.echo(f"serving {tool.address} ({len(tool.methods)} methods)", err=True)
                if allowed is not None:
                    click.echo(f"admitting {len(allowed)} peer id(s) only", err=True)
                async with trio.open_nursery() as nursery:
                    async def stop_on_signal() -> None:
                        async for signum in signals:
                            if signum == signal.SIGHUP:
                                if allow_file is not None:
                                    try:
                                        n.peers.set_allowlist(_allowlist(allow_ids, allow_file))
                                    except click.BadParameter as exc:
                                        click.echo(f"SIGHUP: kept the old allowlist: {exc.message}", err=True)
                                        continue
                                    closed = await n.peers.close_disallowed()
                                    click.echo(f"SIGHUP: allowlist re-read ({len(n.peers.allowed)} peer ids, "
                                               f"{closed} connections closed)", err=True)
                                continue
                            n.request_stop()
                            return
                    nursery.start_soon(stop_on_signal)
                    await n.serve_forever()
                    nursery.cancel_scope.cancel()
        click.echo("stopped", err=True)

    trio.run(serve)


def _allowlist(allow_ids: str | None, allow_file: str | None) -> "set[str] | None":
    """The peer ids named by --allow and --allow-file; None when neither is given."""
    if allow_ids is None and allow_file is None:
        return None
    ids = {p.strip() for p in (allow_ids or "").split(",") if p.strip()}
    if allow_file is not None:
        try:
            with open(allow_file, encoding="utf-8") as f:
                for line in f:
                    line = line.split("#", 1)[0].strip()
                    if line:
                        ids.add(line)
        except OSError as exc:
            raise click.BadParameter(f"cannot read {allow_file}: {exc.strerror}", param_hint="--allow-file") from None
    import multihash
    from libp2p.peer.id import ID

    for peer in ids:
        try:
            multihash.decode(ID.from_base58(peer).to_bytes())
        except Exception:
            raise click.BadParameter(f"not a peer id: {peer!r}", param_hint="--allow") from None
    return ids


def _is_loopback(ma: str) -> bool:
    return ma.startswith(("/ip4/127.", "/ip6/::1/", "/dns4/localhost/", "/dns/localhost/"))


async def _serve_until_signal(n, signals) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        async def stop_on_signal() -> None:
            async for _ in signals:
                n.request_stop()
                return
        nursery.start_soon(stop_on_signal)
        await n.serve_forever()
        nursery.cancel_scope.cancel()


def _maybe_joined(n, leader_ma, parent, units):
    from contextlib import asynccontextmanager

    if not leader_ma:
        @asynccontextmanager
        async def nothing():
            yield None
        return nothing()
    from node_runtime.joining import joined

    return joined(n, leader_ma, parent=parent, units=units)


# --- leader / network ----------------------------------------------------------------


@main.command()
@click.option("--listen", "listen", multiple=True, default=["/ip4/127.0.0.1/tcp/0"], show_default=True, help="multiaddr to listen on (repeatable)")
@click.option("--seed", default=None, help="text seed for a stable identity (peer id)")
@click.option("--ttl", type=float, default=30.0, show_default=True, help="seconds an entry lives without answering the heartbeat")
@click.option("--heartbeat", type=float, default=10.0, show_default=True, help="seconds between pings of every registered node")
@click.option("--registry", "registry_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite file of the registry (default: leader-registry.sqlite in the data dir)")
@click.option("--no-persist", is_flag=True, help="keep the registry in memory only")
def leader(listen, seed, ttl, heartbeat, registry_path, no_persist) -> None:
    """Serve o://leader and its registry (o://registry); print `listening <multiaddr>`."""
    import trio

    from node_runtime.leader import Leader

    if not no_persist and registry_path is None:
        from tool_library.data_dir import data_dir

        registry_path = str(data_dir() / "leader-registry.sqlite")
    path = None if no_persist else registry_path

    async def serve() -> None:
        async with Leader(listen=listen, seed=seed, ttl=ttl, heartbeat=heartbeat, registry_path=path) as lead:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                print(f"listening {lead.listen_addrs[0]}", flush=True)
                click.echo(f"leader o://leader, registry o://registry ({len(lead.registry) - 1} entries kept"
                           f"{', ' + path if path else ''})", err=True)
                await _serve_until_signal(lead.node, signals)
        click.echo("stopped", err=True)

    trio.run(serve)


@main.command()
@click.argument("leader_ma")
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
@click.option("--nodes", type=click.IntRange(min=0), default=3, show_default=True, help="with `up`: how many nodes")
def network(leader_ma, as_json, nodes) -> None:
    """List the registry of the leader at LEADER_MA (`olane network up` starts a local network)."""
    if leader_ma == "up":
        _network_up(nodes)
        return
    import trio

    from node_runtime import Client, OlaneError
    from node_runtime.registry import transports_of

    code = 0

    async def go() -> None:
        nonlocal code
        async with Client(leader=leader_ma) as client:
            try:
                entries = await client.use("o://registry", "find_all", {}, timeout=10)
            except OlaneError as exc:
                click.echo(f"error {exc.code} {exc.name}: {exc.message}", err=True)
                code = EXIT_UNREACHABLE
                return
            rows = []

            async def probe(entry, row) -> None:
                with trio.move_on_after(3):
                    for t in transports_of(entry):
                        if t.startswith("/memory/"):
                            continue
                        try:
                            await client.use(entry["address"], "ping", {}, via=t, timeout=3,
                                             protocol="/o/" + entry["address"][4:])
                            row["reachable"] = True
                            return
                        except (OlaneError, KeyError):
                            continue

            async with trio.open_nursery() as nursery:
                for entry in entries or ():
                    row = {"address": entry.get("address"), "staticAddress": entry.get("staticAddress"),
                           "peerId": entry.get("peerId"), "transports": transports_of(entry),
                           "protocols": entry.get("protocols") or [], "registeredAt": entry.get("registeredAt"),
                           "reachable": False}
                    rows.append(row)
                    nursery.start_soon(probe, entry, row)
        if as_json:
            click.echo(_dumps(rows))
            return
        import datetime

        for row in rows:
            at = row["registeredAt"]
            when = datetime.datetime.fromtimestamp(at / 1000, datetime.timezone.utc).strftime("%H:%M:%S") if at else "?"
            click.echo(f"{row['address']:<32} {row['staticAddress'] or '':<16} {'up' if row['reachable'] else 'DOWN':<4} "
                       f"{when} {row['peerId']}")
            for t in row["transports"]:
                click.echo(f"    {t}")
            click.echo(f"    protocols: {' '.join(p for p in row['protocols'] if p.startswith('/o/'))}")

    trio.run(go)
    sys.exit(code)


def _network_up(count: int) -> None:
    from .network_up import network_up

    network_up(count)


def _build_tools(tool_names, address, files_root, sqlite_db, allow_writes, sqlite_timeout=30.0):
    from tool_library import build_tools

    names = [t.strip() for t in tool_names.split(",") if t.strip()] if tool_names else None
    try:
        return build_tools(names, address=address, files_root=files_root, sqlite_db=sqlite_db,
                           allow_writes=allow_writes, sqlite_timeout=sqlite_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tools") from None


# --- bad input, one line each ----------------------------------------------------------


def _fail_usage(option: str, message: str) -> "NoReturn":
    """A bad option value: one line on stderr, exit 2 (like grpcurl; no usage block)."""
    click.echo(f"error: {option}: {message}", err=True)
    sys.exit(EXIT_UNREACHABLE)


def _identity(seed: str | None, key_file: str | None) -> tuple[str | None, bytes | None]:
    """--seed TEXT or --key FILE (not both) -> (seed, key) for Node / Client."""
    if seed is not None and key_file is not None:
        _fail_usage("--key", "give --seed or --key, not both")
    if key_file is None:
        return seed, None
    from node_runtime.host import read_key_file

    try:
        return None, read_key_file(key_file)
    except (OSError, ValueError) as exc:
        _fail_usage("--key", str(exc))


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; trio wraps what a task raises."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _stdout_gone() -> None:
    """stdout's reader went away (`| head`): point stdout at devnull so the
    interpreter's final flush does not raise again (the Python docs' recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _quiet_exit(code: int) -> "NoReturn":
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
    sys.exit(code)


# --- call / stream ----------------------------------------------------------------

_target_options = [
    click.argument("multiaddr"),
    click.argument("method"),
    click.option("--address", default=None, help="olane address of the tool (default: the one the node serves)"),
    click.option("--params", default="{}", help="parameters as a JSON object"),
    click.option("--timeout", type=float, default=None,
                 help="seconds for the whole call: dial, answer, every chunk (default: call 120, stream none)"),
    click.option("--idle-timeout", type=float, default=120.0, show_default=True,
                 help="seconds to wait for the first frame of the answer and between two of its frames"),
    click.option("--codec", type=click.Choice(["auto", "json", "msgpack"]), default="auto", show_default=True),
    click.option("--seed", default=None, help="text seed for a stable caller identity (the peer id the node sees)"),
    click.option("--key", "key_file", default=None, metavar="FILE", help="key file for a stable caller identity (see `olane id --new-key`)"),
    click.option("--direct", is_flag=True, help="MULTIADDR is a leader: look the address up in its registry and "
                                                "dial the node itself (default: the leader routes the call)"),
]


def _with_target_options(fn, options=None):
    for option in reversed(options or _target_options):
        fn = option(fn)
    return fn


def _with_watch_options(fn):
    return _with_target_options(fn, _watch_options)


def _with_stream_target_options(fn):
    """As _with_target_options, with METHOD optional (not given with --resume)."""
    return _with_target_options(fn, [_target_options[0], click.argument("method", required=False),
                                     *_target_options[2:]])


@main.command()
@_with_target_options
def call(multiaddr, method, address, params, timeout, idle_timeout, codec, seed, key_file, direct) -> None:
    """Call METHOD once; print the result's data as one JSON document. MULTIADDR may be a
    leader's: `--address o://leader/x/y` is then routed by it (or dialed with --direct)."""
    from node_runtime import StreamingCall

    multiaddr, address = _named(multiaddr, address)
    values = _params(params)
    identity = _identity(seed, key_file)
    timeout = 120.0 if timeout is None else timeout

    async def go(client, target, via, protocol):
        await _warn_unknown_params(client, target, method, values, via, protocol)
        answer = StreamingCall(client, target, method, values, via=via, first_frame_timeout=idle_timeout,
                               idle_timeout=idle_timeout, codec=None, streaming=False, timeout=timeout,
                               protocol=protocol)
        result = await answer.result()
        click.echo(_dumps(result))
        if answer.chunks:
            n = answer.chunks
            click.echo(f"note: {method} streams; {n} chunk{'s' if n != 1 else ''} not shown "
                       f"(use `olane stream` to see them)", err=True)

    _run_client(multiaddr, address, codec, identity, go, timeout, direct)


@main.command()
@_with_stream_target_options
@click.option("--timing", is_flag=True,
              help="on stderr at the end: time to the first chunk, from the request frame written (as the console counts it)")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="also write the call to FILE as a recording (docs/recordings.md)")
@click.option("--resumable", is_flag=True,
              help="ask for a resumable stream (a node of ours): prints `resumable as <ID>` on stderr; a dropped "
                   "connection is resumed by itself")
@click.option("--resume", "resume_id", default=None, metavar="ID",
              help="resume the stream ID (started by this caller identity: same --seed or --key) after --after")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="with --resume: the last sequence received")
@click.option("--input", "input_path", default=None, metavar="FILE",
              help="a bidirectional call: send each line of FILE (`-`: stdin), one JSON value a line, as it is read")
@click.option("--compress", type=click.Choice(["zstd", "none"]), default=None,
              help="ask for the answer compressed (zstd), or never (none); default: when the node chooses")
@click.option("--stats", is_flag=True,
              help="last line on stderr: stats chunks=N wire_bytes=B data_bytes=D elapsed_ms=T (bytes as read "
                   "off the stream, and as they would have been uncompressed)")
def stream(multiaddr, method, address, params, timeout, idle_timeout, codec, seed, key_file, direct, timing,
           record_path, resumable, resume_id, after, input_path, compress, stats) -> None:
    """Stream METHOD: one JSON line per chunk, then {"final": ..., "chunks": N}."""
    import time

    from console.commands.recordings import finish_recorder, record_failure

    if resume_id is None and method is None:
        _fail_usage("METHOD", "give the METHOD to stream (or --resume ID)")
    if resume_id is not None and record_path:
        _fail_usage("--record", "a resumed stream cannot be recorded")
    if input_path is not None and (record_path or resumable or resume_id):
        _fail_usage("--input", "a call with --input cannot be recorded or resumable (yet)")
    if input_path not in (None, "-") and not os.path.isfile(input_path):
        _fail_usage("--input", f"no such file: {input_path}")
    compress_arg = {"zstd": "zstd", "none": False}.get(compress)
    multiaddr, address = _named(multiaddr, address)
    values = _params(params)
    identity = _identity(seed, key_file)
    recorder = None
    if record_path:
        from console.core.recording import CallRecorder

        recorder = CallRecorder(record_path, target=multiaddr, address=address, method=method, params=values,
                                codec=None if codec == "auto" else codec)

    async def go(client, target, via, protocol):
        if resumable or resume_id is not None:
            await _stream_resumable(client, target, method, values, via, protocol, timeout, idle_timeout,
                                    resume_id, after, timing)
            return
        await _warn_unknown_params(client, target, method, values, via, protocol)
        if recorder is not None:
            from console.commands.recordings import stream_call

            await stream_call(client, target, method, values, via=via, protocol=protocol, timeout=timeout,
                              idle_timeout=idle_timeout, recorder=recorder)
            return
        options = dict(via=via, timeout=timeout, protocol=protocol, first_frame_timeout=idle_timeout,
                       idle_timeout=idle_timeout, compress=compress_arg)
        began = time.monotonic()
        if input_path is not None:
            import trio

            async with client.open_bidirectional(target, method, values, **options) as call:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_send_input_lines, call, input_path)
                    count, first = await print_chunks(call)
                    nursery.cancel_scope.cancel()  # the answer is complete: stop reading input
        else:
            call = client.use_streaming(target, method, values, **options)
            count, first = await print_chunks(call)
        if timing and call.started_at is not None:
            whole = (time.monotonic() - call.started_at) * 1000
            lead = f"first chunk {(first - call.started_at) * 1000:.1f} ms" if first is not None else "no chunk"
            click.echo(f"{lead} after the request was written; {count} chunks in {whole:.1f} ms", err=True)
        if stats:
            click.echo(f"stats chunks={count} wire_bytes={call.wire_bytes} data_bytes={call.data_bytes} "
                       f"elapsed_ms={(time.monotonic() - began) * 1000:.0f}", err=True)

    async def print_chunks(call):
        count = 0
        first = None
        out = sys.stdout
        async for response in call.responses():
            if response.last:
                break
            count += 1
            if first is None:
                first = time.monotonic()
            seq = response.sequence if response.sequence is not None else count
            out.write(_dumps({"seq": seq, "data": response.data}) + "\n")
        out.write(_dumps({"final": call.final, "chunks": count}) + "\n")
        out.flush()
        return count, first

    try:
        _run_client(multiaddr, address, codec, identity, go, timeout, direct,
                    on_error=(lambda exc: record_failure(recorder, exc)) if recorder else None)
    finally:
        if recorder is not None:
            finish_recorder(recorder)


async def _send_input_lines(call, path: str) -> None:
    """`olane stream --input`: each line of `path` (`-`: stdin) is one JSON value, sent
    as soon as it is read; blank lines are skipped; the end of the file ends the input."""
    import trio

    from node_runtime import ErrorCode, OlaneError

    source = sys.stdin if path == "-" else open(path, encoding="utf-8")
    lines = trio.wrap_file(source)
    try:
        number = 0
        async for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise OlaneError(ErrorCode.INVALID_PARAMETERS,
                                 f"line {number} of {'stdin' if path == '-' else path} is not JSON: {exc}") from None
            try:
                await call.send(value)
            except OlaneError:
                if call.done:  # the answer ended first (its error, if any, is the reader's to report)
                    return
                raise
        await call.end()
    finally:
        if path != "-":
            source.close()
async def _stream_resumable(client, target, method, values, via, protocol, timeout, idle_timeout, resume_id, after,
                            timing) -> None:
    """olane stream --resumable / --resume: the chunks as `olane stream` prints them,
    resuming by itself when the connection drops."""
    import time

    from node_runtime.resuming import ResumableCall

    call = ResumableCall(client, target, method or "resume", values, via=via, protocol=protocol, codec=None,
                         first_frame_timeout=idle_timeout, idle_timeout=idle_timeout, timeout=timeout,
                         stream_id=resume_id, after=after)
    out = sys.stdout
    count = 0
    announced = resume_id is not None
    resumes = 0
    first = None
    async for response in call.responses():
        if response.last:
            break
        if not announced and call.stream_id is not None:
            announced = True
            click.echo(f"resumable as {call.stream_id}", err=True)
        if call.resumes != resumes:
            resumes = call.resumes
            click.echo(f"resumed at seq {call.resumed_at[-1] + 1}", err=True)
        count += 1
        if first is None:
            first = time.monotonic()
        out.write(_dumps({"seq": response.sequence, "data": response.data}) + "\n")
        out.flush()  # a caller killed mid-stream has printed the last sequence to resume after
    out.write(_dumps({"final": call.final, "chunks": count}) + "\n")
    out.flush()
    if timing and call.started_at is not None and first is not None:
        click.echo(f"first chunk {(first - call.started_at) * 1000:.1f} ms after the request was written", err=True)


# --- live streams: list and tap ------------------------------------------------------


_watch_options = [
    click.argument("multiaddr"),
    click.option("--address", default=None, help="olane address of a tool there (default: the first it serves)"),
    click.option("--seed", default=None, help="text seed for the caller identity (the node's --admin, or the "
                                              "stream's own caller)"),
    click.option("--key", "key_file", default=None, metavar="FILE", help="key file for the caller identity"),
    click.option("--timeout", type=float, default=None, help="seconds for the whole command"),
]


@main.command("streams")
@_with_watch_options
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
def streams_command(multiaddr, address, seed, key_file, timeout, as_json) -> None:
    """The node's streams running now that this caller may see (`list_streams`): every one
    for the node's admins (`olane node --admin`), else the caller's own."""
    identity = _identity(seed, key_file)

    async def go(client, target, via, protocol):
        listed = (await client.use(target, "list_streams", via=via, protocol=protocol,
                                   timeout=timeout or 30))["streams"]
        if as_json:
            click.echo(_dumps(listed))
            return
        if not listed:
            click.echo("no streams you may see", err=True)
            return
        for e in listed:
            flags = "".join(f for f, on in (("R", e.get("resumable")), ("S", e.get("share")),
                                            ("z", e.get("suspended"))) if on)
            click.echo(f"{e['streamId']}  {e['address']} {e['method']} {e['params']}  chunks={e['chunks']} "
                       f"rate={e['chunksPerSecond']:g}/s taps={e['taps']} {flags} caller={e['callerPeerId']}")

    _run_client(multiaddr, address, "auto", identity, go, timeout, any_tool=True)


@main.command("tap")
@_with_watch_options
@click.argument("stream_id", metavar="ID")
@click.option("--from", "start", type=click.Choice(["now", "buffer"]), default="now", show_default=True,
              help="buffer: also the chunks the node still holds (a plain stream holds some only while tapped)")
def tap_command(multiaddr, address, seed, key_file, timeout, stream_id, start) -> None:
    """Copies of stream ID's chunks while it runs, as `olane stream` prints them; a gap
    (chunks this tap lost: it read too slowly) is said on stderr."""
    identity = _identity(seed, key_file)

    async def go(client, target, via, protocol):
        call = client.use_streaming(target, "tap", {"streamId": stream_id, "from": start}, via=via,
                                    protocol=protocol, timeout=timeout)
        out = sys.stdout
        count = dropped = 0
        async for response in call.responses():
            lost = response.extra("_dropped") or 0
            if lost:
                dropped += lost
                click.echo(f"dropped {lost} chunk(s) before seq {response.sequence}", err=True)
            if response.last:
                break
            count += 1
            out.write(_dumps({"seq": response.sequence, "data": response.data}) + "\n")
        out.write(_dumps({"final": call.final, "chunks": count, "dropped": dropped}) + "\n")
        out.flush()

    _run_client(multiaddr, address, "auto", identity, go, timeout, any_tool=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--speed", type=float, default=1.0, show_default=True, help="replay this many times faster")
@click.option("--instant", is_flag=True, help="print everything at once")
def replay(file, speed, instant) -> None:
    """Print what `olane stream` printed for a recorded call, at its pace; exit with its exit code."""
    from console.commands.recordings import replay as run_replay

    sys.exit(run_replay(file, speed=speed, instant=instant))


@main.command()
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--ignore", multiple=True, metavar="PATH", help="a dotted JSON path to leave out (repeatable; * matches any key)")
@click.option("--key", default=None, metavar="PATH", help="match chunks by this JSON path in their data (default: _sequence)")
@click.option("--json", "as_json", is_flag=True, help="print the differences as one JSON document")
def diff(a, b, ignore, key, as_json) -> None:
    """Compare two recordings chunk by chunk; exit 0 when data and end agree, 1 otherwise."""
    from console.commands.recordings import diff_files

    sys.exit(diff_files(a, b, ignore=ignore, key=key, as_json=as_json))


def _named(target: str, address: str | None) -> tuple[str, str | None]:
    """MULTIADDR may be a target named in the console (`olane targets`)."""
    if "/" in target:
        return target, address
    from console.commands.collections import resolve_target

    multiaddr, named_address = resolve_target(target)
    return multiaddr, address or named_address


@main.command("run")
@click.argument("name")
@click.option("--target", default=None, help="a named target or a multiaddr (default: the one saved with the call)")
@click.option("--params", default=None, help="JSON object merged over the saved parameters")
@click.option("--timeout", type=float, default=None, help="seconds for the whole call (as olane call/stream)")
@click.option("--idle-timeout", type=float, default=120.0, show_default=True,
              help="seconds to wait for the first frame and between two frames")
@click.option("--codec", type=click.Choice(["auto", "json", "msgpack"]), default="auto", show_default=True)
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="(streams) also write the call to FILE as a recording")
@click.pass_context
def run_saved(ctx, name, target, params, timeout, idle_timeout, codec, record_path) -> None:
    """Run a saved call (GROUP/NAME, from the console's saved calls) as `olane stream` / `olane call` would."""
    from console.commands.collections import RunError, resolve_saved

    try:
        r = resolve_saved(name, target, params)
    except RunError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_UNREACHABLE)
    click.echo(f"{r.name}: {'stream' if r.stream else 'call'} {r.multiaddr} {r.address or ''} {r.method}", err=True)
    args = dict(multiaddr=r.multiaddr, method=r.method, address=r.address, params=_dumps(r.params),
                timeout=timeout, idle_timeout=idle_timeout, codec=codec)
    if r.stream:
        ctx.invoke(stream, record_path=record_path, **args)
    else:
        ctx.invoke(call, **args)


@main.command("saved")
def saved_calls() -> None:
    """List the saved calls (the console saves them with ctrl+s)."""
    from console.commands.collections import list_saved
    from console.core.collections import collections_dir

    calls, problems = list_saved()
    for c in calls:
        click.echo(f"{c.name}\t{c.target or '-'}\t{c.address or '-'}\t{c.method}\t{_dumps(c.params)}")
    for p in problems:
        click.echo(f"unreadable: {p}", err=True)
    if not calls:
        click.echo(f"no saved calls in {collections_dir()}", err=True)


@main.command("targets")
@click.argument("name", required=False)
@click.argument("multiaddr", required=False)
@click.option("--address", default=None, help="o:// address of the node's tool")
@click.option("--remove", is_flag=True, help="forget the name")
def targets(name, multiaddr, address, remove) -> None:
    """List named targets; `olane targets NAME MULTIADDR` names one (the console shows the name)."""
    from console.core.config import Settings

    settings = Settings.load()
    if name and remove:
        for t in settings.targets:
            if t.name == name:
                t.name = None
        settings.save()
    elif name and multiaddr:
        settings.remember_target(multiaddr, address, name)
        settings.save()
    elif name:
        raise click.UsageError("give NAME and MULTIADDR to name a target, or --remove")
    for t in settings.targets:
        if t.name:
            click.echo(f"{t.name}\t{t.multiaddr}" + (f"\t{t.address}" if t.address else ""))


def _params(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        _fail_usage("--params", f"not JSON: {exc}")
    if not isinstance(value, dict):
        _fail_usage("--params", f"must be a JSON object, not {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


async def _warn_unknown_params(client, target: str, method: str, values: dict, via: str,
                               protocol: str | None = None) -> None:
    """Warn on stderr about parameters the method's metadata does not list (olane
    peers ignore them, so the call still runs). Asks `handshake` with {"tool": METHOD};
    a node that cannot say (TypeScript nodes answer 4003) gets no warning."""
    from node_runtime import OlaneError

    given = [name for name in values if not name.startswith("_")]  # _connectionId ... are the runtime's
    if not given:
        return
    try:
        answer = await client.use(target, "handshake", {"tool": method}, via=via, protocol=protocol, timeout=10.0)
        spec = answer["result"]["methods"][method]
        known = [p["name"] for p in spec.get("parameters") or ()]
    except (OlaneError, KeyError, TypeError, AttributeError):
        return
    unknown = [name for name in given if name not in known]
    if unknown:
        names = ", ".join(unknown)
        listed = ", ".join(known) if known else "none"
        click.echo(f"warning: {method} does not list the parameter{'s' if len(unknown) != 1 else ''} {names} "
                   f"(it takes: {listed}); sending anyway", err=True)


def _dial_failure(multiaddr: str, exc: BaseException) -> str | None:
    """What py-libp2p knows about a failed dial that its message hides: a peer that
    proved another id in the Noise handshake (PeerIDMismatchesPubkey, found in the
    exception's cause / context chain)."""
    import re

    seen: set[int] = set()
    todo = [exc]
    handshake_failed = False
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        name = type(e).__name__
        if name == "PeerIDMismatchesPubkey":
            m = re.search(r"remote_peer_id_from_pubkey=(\w+)", str(e))
            expected = re.search(r"remote_peer=(\w+)", str(e))
            if m and expected:
                return f"the peer at {_without_peer(multiaddr)} is {m.group(1)}, not {expected.group(1)}"
            handshake_failed = True
        elif name in ("HandshakeFailure", "NoiseFailure", "InvalidSignature", "HandshakeHasNotFinished"):
            handshake_failed = True
        for attr in ("exceptions", "errors"):  # exception groups; py-libp2p's MultiError
            todo.extend(x for x in getattr(e, attr, None) or () if isinstance(x, BaseException))
        todo.extend((e.__cause__, e.__context__))
    if handshake_failed:
        peer = multiaddr.rsplit("/p2p/", 1)[-1] if "/p2p/" in multiaddr else "the peer id given"
        return (f"the node at {_without_peer(multiaddr)} did not prove it is {peer} "
                f"(wrong peer id in the multiaddr?)")
    return None


def _without_peer(multiaddr: str) -> str:
    return multiaddr.rsplit("/p2p/", 1)[0] if "/p2p/" in multiaddr else multiaddr


async def _route(client, multiaddr: str, target: str, direct: bool) -> tuple[str, str | None]:
    """(via, protocol) for calling `target` at `multiaddr`: the node itself when it serves
    the address; through it when it is a leader (`/o/leader`); with `direct`, the node the
    leader's registry names, dialed on its own transports."""
    from node_runtime import ErrorCode, OlaneError
    from node_runtime.addresses import Address
    from node_runtime.registry import transports_of

    wanted = Address.parse(target)
    protocols = await client.peer_protocols(multiaddr)
    if wanted.protocol in protocols or "/o/leader" not in protocols:
        return multiaddr, None
    if not direct:
        return multiaddr, "/o/leader"
    entries = await client.use("o://registry", "find_all", {}, via=multiaddr, protocol="/o/leader", timeout=10)
    best, best_len = None, -1
    for entry in entries or ():
        address = entry.get("address") or ""
        names = [address] + ["o://" + p[3:] for p in entry.get("protocols") or () if str(p).startswith("/o/")]
        matched = [len(n) for n in names if n != "o://reuse" and (wanted.value == n or wanted.value.startswith(n + "/"))]
        if matched and max(matched) > best_len:  # the entry naming the longest part of the address
            best, best_len = entry, max(matched)
    dialable = [t for t in transports_of(best or {}) if not t.startswith("/memory/")]
    if not dialable:
        raise OlaneError(ErrorCode.NOT_FOUND, f"the registry gives no transports for {wanted}")
    return dialable[0], None


def _run_client(multiaddr: str, address: str | None, codec: str, identity, body, timeout: float | None = None,
                direct: bool = False, on_error=None, any_tool: bool = False) -> None:
    """Run `body(client, target, via, protocol)` as the caller `identity` (seed, key);
    `timeout` bounds all of it, finding the tool included."""
    import trio

    from node_runtime import Client, ErrorCode, OlaneError

    seed, key = identity

    code = 0

    def report(exc: OlaneError) -> int:
        if on_error is not None:  # e.g. a recording notes how the call ended
            on_error(exc)
        message = exc.message
        if exc.code == ErrorCode.FAILED_TO_DIAL_TARGET:
            message = _dial_failure(multiaddr, exc) or message
        click.echo(f"error {exc.code} {exc.name}: {message}", err=True)
        return EXIT_UNREACHABLE if exc.code == ErrorCode.FAILED_TO_DIAL_TARGET else EXIT_ERROR

    async def go() -> None:
        nonlocal code
        async with Client(codec=codec, seed=seed, key=key) as client:
            try:
                with trio.move_on_after(float("inf") if timeout is None else timeout) as scope:
                    await find_and_run(client)
                if scope.cancelled_caught:
                    raise OlaneError(ErrorCode.TIMEOUT, f"no complete answer from {multiaddr} within {timeout:g} s")
            except OlaneError as exc:
                code = report(exc)

    async def find_and_run(client) -> None:
        nonlocal code
        await client.connect(multiaddr)
        target = address
        if target is None:
            candidates = await client.tool_addresses(multiaddr)
            if any_tool and candidates:  # a built-in every tool answers
                candidates = candidates[:1]
            if len(candidates) != 1:
                what = "several tools" if candidates else "no olane tool"
                click.echo(f"{multiaddr} serves {what}; pick one with --address:", err=True)
                for c in candidates:
                    click.echo(f"  {c}", err=True)
                code = EXIT_UNREACHABLE
                return
            target = candidates[0]
        via, protocol = await _route(client, multiaddr, target, direct)
        await body(client, target, via, protocol)

    try:
        trio.run(go)
    except BaseException as exc:  # trio wraps what tasks raise in (nested) exception groups
        leaves = _leaves(exc)
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            code = EXIT_INTERRUPTED
        elif any(isinstance(e, BrokenPipeError) for e in leaves):
            _stdout_gone()
            code = 0
        elif isinstance(exc, SystemExit):
            raise
        elif (olane := next((e for e in leaves if isinstance(e, OlaneError)), None)) is not None:
            code = report(olane)
        else:
            raise
    _quiet_exit(code)


# --- identities ----------------------------------------------------------------------


@main.command("id")
@click.option("--seed", default=None, help="text seed (the one given to olane node/call/stream --seed)")
@click.option("--key", "key_file", default=None, metavar="FILE", help="key file (32 bytes, raw or 64 hex digits)")
@click.option("--new-key", "new_key", default=None, metavar="FILE",
              help="write a fresh random key to FILE (64 hex digits, mode 0600; never overwrites)")
def id_command(seed, key_file, new_key) -> None:
    """Print the peer id of an identity: --seed TEXT, --key FILE, or a new key written to --new-key FILE."""
    from node_runtime.host import peer_id_for_seed

    if sum(x is not None for x in (seed, key_file, new_key)) != 1:
        _fail_usage("id", "give one of --seed TEXT, --key FILE, --new-key FILE")
    if new_key is not None:
        key = secrets.token_bytes(32)
        try:
            fd = os.open(new_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            _fail_usage("--new-key", f"{new_key}: {exc.strerror}" + (" (not overwritten)" if isinstance(exc, FileExistsError) else ""))
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key.hex() + "\n")
        click.echo(peer_id_for_seed(key=key))
        return
    seed, key = _identity(seed, key_file)
    click.echo(peer_id_for_seed(seed=seed, key=key))


# --- bench / console ----------------------------------------------------------------


@main.command(add_help_option=False,  # --help goes to the benchmark's own parser, as for bench-console
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Benchmark the runtime (run `olane bench --help` for its options)."""
    from benchmarks.runtime import main as bench_main

    sys.exit(bench_main(ctx.args))


@main.command("bench-console", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def bench_console(ctx: click.Context) -> None:
    """Benchmark the console under a node streaming flat out (`olane bench-console --help`)."""
    try:
        from benchmarks.console import main as bench_console_main  # lazy: other commands never load textual
    except ImportError as exc:  # pragma: no cover
        click.echo(f"the console is not available: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(bench_console_main(ctx.args))


@main.command()
@click.argument("multiaddrs", nargs=-1)
@click.option("--no-embedded", is_flag=True, help="do not start the embedded node")
@click.option("--seed", default=None, help="text seed for a stable caller identity (the peer id the nodes you call see)")
@click.option("--key", "key_file", default=None, metavar="FILE", help="key file for a stable caller identity (see `olane id --new-key`)")
@click.option("--node-seed", default=None, help="text seed for the embedded node's identity (stable peer id)")
@click.option("--max-chunks", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="chunks each stream pane holds (older ones drop out; counters cover all)")
@click.option("--open", "open_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="open a recording as a tab that replays it (repeatable)")
@click.option("--run", "run", default=None, metavar="'ADDRESS METHOD'",
              help="open with this call running in its tab, e.g. --run 'o://demo stream_items'")
@click.option("--params", default=None, help="parameters of the --run call, as a JSON object")
@click.option("--network", "network_nodes", is_flag=False, flag_value=3, default=None, type=click.IntRange(min=0),
              metavar="[N]", help="start a local network (`olane network up --nodes N`, default 3) and open on its leader")
def console(multiaddrs=(), no_embedded=False, seed=None, key_file=None, node_seed=None, max_chunks=100_000,
            run=None, params=None, open_files=(), network_nodes=None) -> None:
    """Open the console: on an embedded node serving the tool library, or connected to MULTIADDRS
    (a leader's shows its whole network)."""
    if network_nodes is not None:
        from .network_up import local_network

        with local_network(network_nodes) as lma:
            _open_console([*multiaddrs, lma], True, seed, key_file, node_seed, max_chunks, run, params, open_files)
        return
    _open_console(multiaddrs, no_embedded, seed, key_file, node_seed, max_chunks, run, params, open_files)


def _open_console(multiaddrs, no_embedded, seed, key_file, node_seed, max_chunks, run, params, open_files) -> None:
    caller_seed, caller_key = _identity(seed, key_file)
    if node_seed is not None and node_seed == seed:
        _fail_usage("--node-seed", "the embedded node and the caller need different identities")
    call = _run_option(run, params)
    try:
        from .app import run_console
    except ImportError as exc:  # pragma: no cover
        click.echo(f"the console is not available: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    code = run_console(list(multiaddrs), embedded=not no_embedded and not multiaddrs, seed=node_seed,
                       max_chunks=max_chunks, run=call, caller_seed=caller_seed, caller_key=caller_key,
                       open_files=open_files)
    if code:
        sys.exit(code)


def _run_option(run: str | None, params: str | None) -> tuple[str, str, dict] | None:
    """--run 'ADDRESS METHOD' [--params JSON] -> (o://address, method, params)."""
    if run is None:
        if params is not None:
            raise click.BadParameter("goes with --run", param_hint="--params")
        return None
    parts = run.split()
    if len(parts) != 2:
        raise click.BadParameter("give the tool's address and the method, e.g. 'o://demo stream_items'",
                                 param_hint="--run")
    address, method = parts
    if not address.startswith("o://"):
        address = "o://" + address.lstrip("/")
    return address, method, _params(params) if params is not None else {}


@main.command()
def locate() -> None:
    """Print where the console keeps its settings, data and exports."""
    from .core.config import config_path, data_dir

    click.echo(f"config   {config_path()}")
    click.echo(f"data     {data_dir()}")
    click.echo(f"exports  {data_dir() / 'exports'}")
    from console.core.collections import collections_dir
    from console.core.history import FILE_NAME

    click.echo(f"history  {data_dir() / FILE_NAME}")
    click.echo(f"recordings {data_dir() / 'recordings'}")
    click.echo(f"saved    {collections_dir()}")


if __name__ == "__main__":
    main()
