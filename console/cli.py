"""The `olane` command: run a node, call or stream a method headless, benchmark,
or open the console (the default). stdout is data, stderr is narrative; exit 0
on success, 1 on an error answer, 2 when the target cannot be reached or named."""
from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from node_runtime.codec import json_default


EXIT_ERROR = 1
EXIT_UNREACHABLE = 2


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=json_default)



@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
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
def node(address, listen, seed, tool_names, files_root, sqlite_db, allow_writes, sqlite_timeout, allow_ids,
         allow_file) -> None:
    """Serve tools; print `listening <multiaddr>` once ready; stop on SIGINT/SIGTERM."""
    import trio

    from node_runtime import Node

    tools = _build_tools(tool_names, address, files_root, sqlite_db, allow_writes, sqlite_timeout)
    allowed = _allowlist(allow_ids, allow_file)
    if allowed is None and any(not _is_loopback(ma) for ma in listen):
        click.echo("warning: listening beyond 127.0.0.1 with no allowlist: anyone who can reach the port may "
                   "call every method (see --allow / --allow-file)", err=True)

    async def serve() -> None:
        async with Node(tools, seed=seed, listen=listen, allow=allowed) as n:
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


def _build_tools(tool_names, address, files_root, sqlite_db, allow_writes, sqlite_timeout=30.0):
    from tool_library import build_tools

    names = [t.strip() for t in tool_names.split(",") if t.strip()] if tool_names else None
    try:
        return build_tools(names, address=address, files_root=files_root, sqlite_db=sqlite_db,
                           allow_writes=allow_writes, sqlite_timeout=sqlite_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tools") from None


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
]


def _with_target_options(fn):
    for option in reversed(_target_options):
        fn = option(fn)
    return fn


@main.command()
@_with_target_options
def call(multiaddr, method, address, params, timeout, idle_timeout, codec) -> None:
    """Call METHOD once; print the result's data as one JSON document."""
    multiaddr, address = _named(multiaddr, address)
    timeout = 120.0 if timeout is None else timeout

    async def go(client, target):
        result = await client.use(target, method, _params(params), via=multiaddr, timeout=timeout)
        click.echo(_dumps(result))

    _run_client(multiaddr, address, codec, go, timeout)


@main.command()
@_with_target_options
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="also write the call to FILE as a recording (docs/recordings.md)")
def stream(multiaddr, method, address, params, timeout, idle_timeout, codec, record_path) -> None:
    """Stream METHOD: one JSON line per chunk, then {"final": ..., "chunks": N}."""
    from console.commands.recordings import finish_recorder, record_failure, stream_call
    from console.core.recording import CallRecorder

    multiaddr, address = _named(multiaddr, address)

    values = _params(params)
    recorder = None
    if record_path:
        recorder = CallRecorder(record_path, target=multiaddr, address=address, method=method, params=values,
                                codec=None if codec == "auto" else codec)

    async def go(client, target):
        await stream_call(client, target, method, values, via=multiaddr, timeout=timeout,
                          idle_timeout=idle_timeout, recorder=recorder)

    try:
        _run_client(multiaddr, address, codec, go, timeout,
                    on_error=(lambda exc: record_failure(recorder, exc)) if recorder else None)
    finally:
        if recorder is not None:
            finish_recorder(recorder)


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
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    return value


def _run_client(multiaddr: str, address: str | None, codec: str, body, timeout: float | None = None,
                on_error=None) -> None:
    """Run `body(client, target)`; `timeout` bounds all of it, finding the tool included.
    `on_error(exc)` hears of the OlaneError that ends the command (a recording notes it)."""
    import trio

    from node_runtime import Client, ErrorCode, OlaneError

    code = 0

    async def go() -> None:
        nonlocal code
        async with Client(codec=codec) as client:
            try:
                with trio.move_on_after(float("inf") if timeout is None else timeout) as scope:
                    await find_and_run(client)
                if scope.cancelled_caught:
                    raise OlaneError(ErrorCode.TIMEOUT, f"no complete answer from {multiaddr} within {timeout:g} s")
            except OlaneError as exc:
                if on_error is not None:
                    on_error(exc)
                click.echo(f"error {exc.code} {exc.name}: {exc.message}", err=True)
                code = EXIT_UNREACHABLE if exc.code == ErrorCode.FAILED_TO_DIAL_TARGET else EXIT_ERROR

    async def find_and_run(client) -> None:
        nonlocal code
        await client.connect(multiaddr)
        target = address
        if target is None:
            candidates = await client.tool_addresses(multiaddr)
            if len(candidates) != 1:
                what = "several tools" if candidates else "no olane tool"
                click.echo(f"{multiaddr} serves {what}; pick one with --address:", err=True)
                for c in candidates:
                    click.echo(f"  {c}", err=True)
                code = EXIT_UNREACHABLE
                return
            target = candidates[0]
        await body(client, target)

    try:
        trio.run(go)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    sys.exit(code)


# --- bench / console ----------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
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
@click.option("--seed", default=None, help="text seed for the embedded node's identity (stable peer id)")
@click.option("--max-chunks", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="chunks each stream pane holds (older ones drop out; counters cover all)")
@click.option("--open", "open_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="open a recording as a tab that replays it (repeatable)")
def console(multiaddrs=(), no_embedded=False, seed=None, max_chunks=100_000, open_files=()) -> None:
    """Open the console: on an embedded node serving the tool library, or connected to MULTIADDRS."""
    try:
        from .app import run_console
    except ImportError as exc:  # pragma: no cover
        click.echo(f"the console is not available: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(run_console(list(multiaddrs), embedded=not no_embedded and not multiaddrs, seed=seed,
                         max_chunks=max_chunks, open_files=open_files))


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
