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
    timeout = 120.0 if timeout is None else timeout

    async def go(client, target):
        result = await client.use(target, method, _params(params), via=multiaddr, timeout=timeout)
        click.echo(_dumps(result))

    _run_client(multiaddr, address, codec, go, timeout)


@main.command()
@_with_target_options
def stream(multiaddr, method, address, params, timeout, idle_timeout, codec) -> None:
    """Stream METHOD: one JSON line per chunk, then {"final": ..., "chunks": N}."""
    async def go(client, target):
        call = client.use_streaming(target, method, _params(params), via=multiaddr, timeout=timeout,
                                    first_frame_timeout=idle_timeout, idle_timeout=idle_timeout)
        count = 0
        out = sys.stdout
        async for response in call.responses():
            if response.last:
                break
            count += 1
            seq = response.sequence if response.sequence is not None else count
            out.write(_dumps({"seq": seq, "data": response.data}) + "\n")
        out.write(_dumps({"final": call.final, "chunks": count}) + "\n")
        out.flush()

    _run_client(multiaddr, address, codec, go, timeout)


def _params(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    return value


def _run_client(multiaddr: str, address: str | None, codec: str, body, timeout: float | None = None) -> None:
    """Run `body(client, target)`; `timeout` bounds all of it, finding the tool included."""
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
def console(multiaddrs=(), no_embedded=False, seed=None, max_chunks=100_000) -> None:
    """Open the console: on an embedded node serving the tool library, or connected to MULTIADDRS."""
    try:
        from .app import run_console
    except ImportError as exc:  # pragma: no cover
        click.echo(f"the console is not available: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(run_console(list(multiaddrs), embedded=not no_embedded and not multiaddrs, seed=seed,
                         max_chunks=max_chunks))


@main.command()
def locate() -> None:
    """Print where the console keeps its settings, data and exports."""
    from .core.config import config_path, data_dir

    click.echo(f"config   {config_path()}")
    click.echo(f"data     {data_dir()}")
    click.echo(f"exports  {data_dir() / 'exports'}")


if __name__ == "__main__":
    main()
