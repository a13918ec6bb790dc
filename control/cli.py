"""The `fastnet` command line."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from ..datapath.errors import FastnetError
from . import interrupt, output, procs
from .config import ConfigError, load_config
from .names import project_name_problem

BUNDLED_EXAMPLE = Path(__file__).resolve().parent / "examples" / "demo.yaml"


def default_config_path() -> Path:
    """./fastnet.yaml, else a Compose file in Compose's own order, else the bundled example."""
    from .compose import COMPOSE_FILE_NAMES

    for name in ("fastnet.yaml", *COMPOSE_FILE_NAMES):
        if Path(name).exists():
            return Path(name)
    return BUNDLED_EXAMPLE


def fail(message: str, code: int = 1) -> None:
    click.echo(f"fastnet: error: {message}", err=True)
    sys.exit(code)


def _load(path: str | None):
    try:
        config = load_config(path or default_config_path())
    except ConfigError as exc:
        fail(str(exc), 2)
    for warning in config.warnings:
        click.echo(f"fastnet: warning: {warning}", err=True)
    return config


def show(data, as_json: bool, table) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        table(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastnet")
def cli() -> None:
    """Container networking with an eBPF datapath at the TC hook."""
    if os.geteuid() != 0:
        fail("fastnet must run as root (it creates namespaces and loads BPF programs)")


@cli.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="Config file, fastnet's own or Compose (default ./fastnet.yaml, compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml, else the bundled example).")
@click.option("--backend", type=click.Choice(["ebpf", "iptables"]), help="Override the file's backend.")
def up(path: str | None, backend: str | None) -> None:
    """Create or converge the project's networks and containers."""
    from .engine import UpError, up as do_up

    config = _load(path)
    if backend is not None:
        config = dataclasses.replace(config, backend=backend)
    try:
        result = do_up(config)
    except UpError as exc:
        fail(f"up {config.name}: {exc}", exc.exit_status)
    output.print_up(result)


@cli.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="Config file naming the project.")
@click.option("-p", "--project", help="Project name (instead of reading a config file).")
def down(path: str | None, project: str | None) -> None:
    """Remove every trace of the project. Succeeds when there is nothing left to remove."""
    from .engine import down as do_down

    if project is not None and (problem := project_name_problem(project)):
        fail(f"down: -p: {problem}", 2)
    config = None if project and not path else _load(path)
    name = project or config.name
    report = do_down(name, config)
    for note in report.notes:
        click.echo(f"fastnet: down {name}: {note}", err=True)
    if report.errors:
        for e in report.errors:
            click.echo(f"fastnet: error: down {name}: {e}", err=True)
        sys.exit(1)
    click.echo(f"project {name} is down")
    if (signum := interrupt.pending()) is not None:  # it waited until the teardown was done
        sys.exit(128 + signum)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ps(as_json: bool) -> None:
    """List projects and containers on this host, with the datapath's counters."""
    from .inventory import host_inventory

    show(host_inventory(), as_json, output.print_ps)


@cli.command()
@click.argument("name")
def inspect(name: str) -> None:
    """Show one container as JSON (NAME or PROJECT/NAME)."""
    from .inventory import NotFound, find_container

    try:
        click.echo(json.dumps(find_container(name), indent=2))
    except NotFound as exc:
        fail(str(exc))


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside container NAME (in `/`, with a minimal environment); exits with COMMAND's status."""
    from .inventory import NotFound, enter_container

    try:
        enter_container(name)
    except NotFound as exc:
        fail(str(exc))
    # As a container's command starts (control/procs.py), and as `docker exec` does: in `/`, with
    # fastnet's environment, keeping only the caller's terminal type.
    os.chdir(procs.WORKDIR)
    env = procs.environment(HOME="/root", **{k: os.environ[k] for k in ("TERM",) if k in os.environ})
    try:
        os.execvpe(command[0], list(command), env)
    except FileNotFoundError:
        fail(f"exec {name}: {command[0]}: command not found", 127)
    except PermissionError:
        fail(f"exec {name}: {command[0]}: permission denied", 126)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def conntrack(ctx: click.Context, as_json: bool) -> None:
    """List the connections the datapath tracks and translates."""
    if ctx.invoked_subcommand is not None:
        return
    from .inventory import conntrack as flows

    show(flows(), as_json, output.print_conntrack)


@conntrack.command()
def flush() -> None:
    """Forget every tracked connection (established flows lose their translation)."""
    from .inventory import conntrack as flows

    click.echo(f"removed {flows(flush=True)} conntrack entries")


@cli.command()
def keeper() -> None:
    """Run this host's keeper in the foreground, for a service manager (systemd); without one,
    the first `up` starts it."""
    from .host import HostError, current_host, exec_keeper

    try:
        exec_keeper(current_host())
    except HostError as exc:
        fail(f"keeper: {exc}")


@cli.command()
@click.option("--quick", is_flag=True, help="Short durations and small sizes (a few minutes).")
@click.option("--variants", help="Comma-separated subset of ebpf,iptables,nftables,direct "
              "(default: all; --quick: all but nftables).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every sample and the environment here.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), help="Write a bar chart here.")
@click.option("--repeat", type=click.IntRange(1, 100), help="Repetitions (default 2 quick, 5 full).")
@click.option("--tiny", is_flag=True, hidden=True, help="Smallest sizes (for the test suite).")
def bench(quick: bool, variants: str | None, json_path: str | None, png_path: str | None, repeat: int | None,
          tiny: bool) -> None:
    """Measure fastnet against the iptables backend and a bare veth, side by side."""
    from .bench import BenchError, bench as run_bench

    chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    try:
        run_bench(quick or tiny, chosen, json_path, png_path, repeat, tiny)
    except BenchError as exc:
        fail(f"bench: {exc}")
    except KeyboardInterrupt:
        fail("bench: interrupted (everything it created was removed)", 130)


def main() -> None:
    try:
        cli(prog_name="fastnet", standalone_mode=True)
    except SystemExit:
        raise
    except FastnetError as exc:  # a problem fastnet can name: its message is the one line
        if os.environ.get("FASTNET_DEBUG"):
            raise
        lines = str(exc).strip().splitlines()
        click.echo(f"fastnet: error: {lines[0] if lines else type(exc).__name__}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug or an unforeseen system state: one line, not a traceback
        if os.environ.get("FASTNET_DEBUG"):
            raise
        lines = str(exc).strip().splitlines()
        click.echo(f"fastnet: error: {type(exc).__name__}: {lines[0] if lines else ''} "
                   "(set FASTNET_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
