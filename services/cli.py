"""`rapport`: run Rapport on a laptop (`up`) or one service per deployment (`serve`)."""
from __future__ import annotations

import getpass
import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from enum import Enum
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from services import migrations
from services.first_start import ensure_credentials
from services.runtime import audit, logs, parked
from services.runtime.clock import now
from services.runtime.access import SCOPES, create_token
from services.runtime.bootstrap import bootstrap_runtime, tune_gc
from services.runtime.db import make_engine, writing
from services.runtime.runner import SERVICE_NAMES, bootstrap_services, build_app, projector_for
from services.runtime.settings import Settings

# Admin and privacy commands whose success is written to the audit log (who: the OS user).
AUDITED = {("source", c) for c in ("create", "rotate", "disable", "enable", "plan")} | {
    ("token", "create"), ("token", "revoke"), ("identity", "unmerge"), ("parked", "retry"), ("replay",),
    ("privacy", "delete")}


def _audit(*_result, **_params) -> None:
    words = tuple(a for a in sys.argv[1:] if not a.startswith("-"))
    if words[:2] in AUDITED or words[:1] in AUDITED:
        said = sys.argv[1:] if words[:2] != ("privacy", "delete") else [*words[:3], "[redacted]"]
        audit.record(make_engine(Settings().database_url), f"cli ({getpass.getuser()})",
                     "rapport " + " ".join(said))  # an erased person's identifier is not kept


app = typer.Typer(help="Rapport, an event-sourced customer data platform.", no_args_is_help=True,
                  result_callback=_audit)
console = Console()
ServiceName = Enum("ServiceName", {name: name for name in SERVICE_NAMES}, type=str)


@app.command()
def up(host: Annotated[str, typer.Option(help="address to listen on")] = "",
       port: Annotated[int, typer.Option(help="port to listen on (0: settings)")] = 0,
       demo: Annotated[bool, typer.Option(envvar="RAPPORT_DEMO",
                                          help="on a first start (no events yet), load demo data")] = True,
       demo_people: Annotated[int, typer.Option(envvar="RAPPORT_DEMO_PEOPLE", min=1)] = 500,
       demo_seed: Annotated[int, typer.Option(envvar="RAPPORT_DEMO_SEED")] = 1) -> None:
    """Every service in one process: SQLite under ./.rapport/ and the embedded log by default."""
    from services.demo.sender import seed_in_background

    settings = Settings()
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    credentials = ensure_credentials(runtime.engine, settings.data_dir)
    host, port = host or settings.http_host, port or settings.http_port
    console.print(f"[bold]Rapport[/] is up on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    console.print(f"  console: http://{host}:{port}/console  (sign in with the admin access token)")
    console.print(f"  write key (HTTP Basic username for /v1/track, /v1/identify): {credentials['write_key']}")
    console.print(f"  admin access token (Authorization: Bearer ...): {credentials['admin_token']}")
    if demo and _no_events_yet(runtime):
        console.print(f"  loading demo data ({demo_people} people) in the background; --no-demo turns it off")
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        seed_in_background(f"http://{local}:{port}", credentials["admin_token"], demo_people, demo_seed)
    _serve(build_app(runtime, bootstrap_services(runtime)), host, port)


def _no_events_yet(runtime) -> bool:
    from services.runtime.log import TopicPartition
    from services.runtime.topics import EVENTS_RAW

    partitions = [TopicPartition(EVENTS_RAW, p) for p in range(runtime.settings.partitions_for(EVENTS_RAW))]
    return not any(runtime.log.end_offsets(partitions).values())


@app.command()
def demo(people: Annotated[int, typer.Option(min=1, help="how many people to generate")] = 500,
         seed: Annotated[int, typer.Option(help="the same seed gives the same people")] = 1,
         url: Annotated[str, typer.Option(help="the Rapport to send to")] = "http://127.0.0.1:8000",
         token: Annotated[str, typer.Option(envvar="RAPPORT_TOKEN",
                                            help="admin token (default: the first start's)")] = "") -> None:
    """Send a year of a realistic customer base through the ingest API, with example segments."""
    import json

    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from services.demo.sender import seed as send_demo

    saved = Settings().data_dir / "credentials.json"
    token = token or (json.loads(saved.read_text())["admin_token"] if saved.exists() else "")
    if not token:
        console.print(f"[red]no admin token: pass --token (none saved in {saved})[/]")
        raise typer.Exit(2)
    try:
        with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(f"{people} people", total=None)
            outcome = send_demo(url.rstrip("/"), token, people, seed,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (httpx.HTTPError, RuntimeError) as error:  # unreachable, refused token: say so and stop
        console.print(f"[red]demo data not sent:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"{outcome.sent} events sent ({outcome.rejected} rejected on purpose: see Sources in the "
                  f"console); segments: {', '.join(outcome.segments)}; console: {url.rstrip('/')}/console")


WORKER_SERVICE = "RAPPORT_SERVE_SERVICE"  # tells each process of `serve --workers` what to build
STATELESS = {"ingest"}  # services without a projector: any number of processes may share a port


@app.command()
def serve(service: Annotated[ServiceName, typer.Argument(help="which service to run")],
          host: Annotated[str, typer.Option()] = "", port: Annotated[int, typer.Option()] = 0,
          workers: Annotated[int, typer.Option(min=1, help="processes sharing the port (ingest only: "
                                                     "it holds no consumer; one Python process uses one core)")] = 1,
          ) -> None:
    """One service, as a deployment runs it (run `rapport migrate` first)."""
    settings = Settings()
    runtime = bootstrap_runtime(settings)
    if not migrations.at_head(runtime.engine):
        console.print("[red]the database is not migrated to head: run `rapport migrate` first[/]")
        raise typer.Exit(2)
    host, port = host or settings.http_host, port or settings.http_port
    if workers > 1:
        if service.value not in STATELESS:
            console.print(f"[red]--workers: only {', '.join(sorted(STATELESS))} runs in several processes; "
                          f"{service.value}'s projector is one consumer (run more replicas on Kafka)[/]")
            raise typer.Exit(2)
        runtime.close()
        os.environ[WORKER_SERVICE] = service.value
        logs.configure(settings.log_level, settings.log_format)
        uvicorn.run("services.cli:worker_app", factory=True, workers=workers, host=host, port=port,
                    log_config=None, access_log=False, timeout_graceful_shutdown=settings.shutdown_grace_s)
        return
    _serve(build_app(runtime, bootstrap_services(runtime, [service.value])), host, port)


def worker_app():
    """The app of one process of `serve --workers` (uvicorn imports and calls this in each)."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    access = logging.getLogger("uvicorn.access")  # off, as access_log=False turns it off in one process
    access.handlers, access.propagate = [], False
    runtime = bootstrap_runtime(settings)
    return build_app(runtime, bootstrap_services(runtime, [os.environ[WORKER_SERVICE]]))


sources = typer.Typer(help="Sources of events and their write keys.", no_args_is_help=True)
tokens = typer.Typer(help="Access tokens for the query and admin APIs.", no_args_is_help=True)
app.add_typer(sources, name="source")
app.add_typer(tokens, name="token")


@sources.command("create")
def create_source(name: str, kind: Annotated[str, typer.Option(help="website, mobile, server, social, shop, helpdesk")] = "server") -> None:
    """Create a source and print its write key."""
    from services.ingest.sources import new_source

    runtime = bootstrap_runtime(Settings())
    with writing(runtime.engine) as session:
        source = new_source(session, name, kind)
    console.print(f"source {source.id} ({kind})\nwrite key: {source.write_key}")


@sources.command("list")
def list_sources() -> None:
    """List sources with their kind, state, plan mode and write key."""
    from services.ingest.sources import all_sources

    runtime = bootstrap_runtime(Settings())
    with writing(runtime.engine) as session:
        for source in all_sources(session):
            state = "enabled" if source.enabled else "disabled"
            console.print(f"{source.id}  {source.kind:<8} {state:<8} plan:{source.plan_mode:<5} "
                          f"{source.write_key}  {source.name}", soft_wrap=True)


def _change_source(source_id: str, change) -> None:
    from services.ingest.sources import UnknownSource

    runtime = bootstrap_runtime(Settings())
    try:
        with writing(runtime.engine) as session:
            source = change(session, source_id)
            console.print(f"source {source.id}: {'enabled' if source.enabled else 'disabled'}, "
                          f"plan {source.plan_mode}\nwrite key: {source.write_key}", soft_wrap=True)
    except (UnknownSource, ValueError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None


@sources.command("rotate")
def rotate_source_key(source_id: str) -> None:
    """Give a source a new write key; the old one stops (other processes: within the key cache TTL)."""
    from services.ingest.sources import rotate_key

    _change_source(source_id, rotate_key)


@sources.command("disable")
def disable_source(source_id: str) -> None:
    """Refuse a source's events (401) from now on (other processes: within the key cache TTL)."""
    from services.ingest.sources import set_enabled

    _change_source(source_id, lambda session, i: set_enabled(session, i, False))


@sources.command("enable")
def enable_source(source_id: str) -> None:
    """Take a disabled source's events again."""
    from services.ingest.sources import set_enabled

    _change_source(source_id, lambda session, i: set_enabled(session, i, True))


@sources.command("plan")
def plan_source(source_id: str, mode: Annotated[str, typer.Argument(help="allow, warn or block")]) -> None:
    """Set what a source's tracking plan does with unplanned events and violations."""
    from services.ingest.sources import set_plan_mode

    _change_source(source_id, lambda session, i: set_plan_mode(session, i, mode))


@tokens.command("create")
def create_access_token(name: str, scope: Annotated[list[str], typer.Option(help="repeat for several")] = ["admin"]) -> None:
    """Create an access token and print it (only its hash is stored)."""
    runtime = bootstrap_runtime(Settings())
    with writing(runtime.engine) as session:
        try:
            token = create_token(session, name, scope)
        except ValueError as error:
            console.print(f"[red]{error}[/]; scopes are: {', '.join(SCOPES)}")
            raise typer.Exit(2) from None
    console.print(f"access token: {token}")


@tokens.command("list")
def list_tokens() -> None:
    """Access tokens (never their secrets), revoked ones marked."""
    from sqlalchemy import select

    from services.runtime.access import AccessToken
    from services.runtime.db import reading

    with reading(make_engine(Settings().database_url)) as session:
        for row in session.scalars(select(AccessToken).order_by(AccessToken.created_at)):
            revoked = f"  revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else ""
            console.print(f"{row.id}  {row.name}  {','.join(row.scopes)}{revoked}")


@tokens.command("revoke")
def revoke_token(token_id: str) -> None:
    """Revoke an access token at once."""
    from services.runtime.access import AccessToken

    with writing(make_engine(Settings().database_url)) as session:
        row = _row_or_exit(session, AccessToken, token_id, "token")
        row.revoked_at = row.revoked_at or now()
    console.print(f"token {token_id} revoked")


def _row_or_exit(session, model, key: str, what: str):
    """The row of `model` keyed `key`, else a message naming `what` and exit code 2."""
    row = session.get(model, key)
    if row is None:
        console.print(f"[red]no {what} {key!r}[/]")
        raise typer.Exit(2)
    return row


@contextmanager
def _writing_runtime(refused: type[Exception], code: int, message: Callable[[Exception], str]):
    """The runtime and one write transaction for a command; `refused` errors are printed with
    `message` and exit with `code` (nothing is committed)."""
    settings = Settings()
    runtime = bootstrap_runtime(settings)
    try:
        with writing(runtime.engine) as session:
            yield settings, runtime, session
    except refused as error:
        console.print(f"[red]{message(error)}[/]")
        raise typer.Exit(code) from None
    finally:
        runtime.close()


identity = typer.Typer(help="The identity graph.", no_args_is_help=True)
app.add_typer(identity, name="identity")


@identity.command("unmerge")
def unmerge_identifier(profile_id: str, type_: Annotated[str, typer.Argument(metavar="TYPE")], value: str,
                       block: Annotated[bool, typer.Option(help="never link this value again")] = False,
                       reason: Annotated[str, typer.Option()] = "") -> None:
    """Split an identifier off a profile (or block it) and resolve its events again."""
    from services.identity.domain.identifiers import Identifier
    from services.identity.domain.rules import load_rules
    from services.identity.operations import NotFound, unmerge

    with _writing_runtime(NotFound, 1, str) as (settings, runtime, session):
        done = unmerge(session, runtime.log, load_rules(settings.identity_rules_path), profile_id,
                       Identifier(type_, value), "block" if block else "remove", reason)
    console.print(f"{'blocked' if block else 'removed'} {type_} {value!r} from {done['profile_id']}; "
                  f"{done['events_resolved_again']} events resolved again")


privacy_cli = typer.Typer(help="Erasure: deletion requests.", no_args_is_help=True)
app.add_typer(privacy_cli, name="privacy")


@privacy_cli.command("delete")
def request_erasure(type_: Annotated[str, typer.Argument(metavar="TYPE")], value: str,
                    mode: Annotated[str, typer.Option(help="delete_and_suppress or suppress (default: settings)")] = "") -> None:
    """Erase the person an identifier names; the erasure worker carries the request out."""
    from services.identity.domain.rules import load_rules
    from services.privacy.requests import request_deletion
    from services.runtime.http import ApiError

    with _writing_runtime(ApiError, 2, lambda error: error.message) as (settings, runtime, session):
        row = request_deletion(session, runtime.keys, load_rules(settings.identity_rules_path), type_, value,
                               mode or settings.erasure_mode)
    console.print(f"deletion request {row.id}: pending (follow it with `rapport privacy status {row.id}`)")


@privacy_cli.command("status")
def erasure_status(request_id: str) -> None:
    """A deletion request's status and what it erased."""
    import json

    from services.privacy.routes import status_of
    from services.privacy.tables import DeletionRequest

    with writing(make_engine(Settings().database_url)) as session:
        row = _row_or_exit(session, DeletionRequest, request_id, "deletion request")
        console.print_json(json.dumps(status_of(row).model_dump()))


segments_cli = typer.Typer(help="Segments: backfill progress.", no_args_is_help=True)
app.add_typer(segments_cli, name="segment")


@segments_cli.command("status")
def segment_status(key: str, wait: Annotated[bool, typer.Option(help="follow the backfill to its end")] = False,
                   timeout: Annotated[float, typer.Option(help="seconds to follow it")] = 3600) -> None:
    """A segment's size and the progress of its background backfill."""
    from rich.progress import Progress

    from services.segments.backfill import progress_of

    engine = make_engine(Settings().database_url)
    state = progress_of(engine, key)
    if state is None:
        console.print(f"[red]no segment {key!r}[/]")
        raise typer.Exit(2)
    if wait and state["state"] != "done":
        with Progress(console=console) as bar:
            task = bar.add_task(f"backfill {key}", total=max(state["total"], 1))
            deadline = time.monotonic() + timeout
            while state["state"] != "done" and time.monotonic() < deadline:
                bar.update(task, completed=state["done"], total=max(state["total"], 1))
                time.sleep(0.2)  # polling a progress row for display, not synchronising
                state = progress_of(engine, key)
            bar.update(task, completed=state["done"])
    console.print(f"{key}: {state['size']} members; backfill {state['state']} "
                  f"({state['done']}/{state['total']} profiles)")


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    runtime = bootstrap_runtime(Settings())
    migrations.upgrade(runtime.engine)
    console.print("database migrated to head")


@app.command("wait-migrated")
def wait_migrated(timeout: Annotated[float, typer.Option(help="seconds before giving up")] = 600) -> None:
    """Wait until the database is at the latest migration (a pod's init container runs this)."""
    import time

    engine = make_engine(Settings().database_url)
    deadline = time.monotonic() + timeout
    while not _at_head(engine):
        if time.monotonic() > deadline:
            console.print(f"[red]the database was not migrated within {timeout:.0f}s[/]")
            raise typer.Exit(1)
        time.sleep(2)  # polling a remote database: nothing to wait on
    console.print("database at head")


def _at_head(engine) -> bool:
    try:
        return migrations.at_head(engine)
    except Exception:  # noqa: BLE001 - unreachable or not created yet: keep waiting
        return False


def _serve(app_, host: str, port: int) -> None:
    settings = app_.state.runtime.settings
    tune_gc()
    logs.configure(settings.log_level, settings.log_format)
    # log_config=None keeps our JSON handlers; the middleware writes the access log
    uvicorn.run(app_, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=settings.shutdown_grace_s)


parked_events = typer.Typer(help="Events a consumer could not apply, set aside.", no_args_is_help=True)
app.add_typer(parked_events, name="parked")


@parked_events.command("list")
def list_parked(consumer: Annotated[str, typer.Option(help="only this consumer's")] = "",
                resolved: Annotated[bool, typer.Option(help="include retried ones")] = False) -> None:
    """Parked events with the error each one failed with, oldest first."""
    rows = parked.list_parked(bootstrap_runtime(Settings()).engine, consumer or None, resolved)
    for row in rows:
        event = parked.as_json(row)
        state = f"resolved {event['resolved_at']}" if row.resolved_at else f"parked {event['parked_at']}"
        console.print(f"[bold]#{row.id}[/] {row.consumer} {row.topic}/{row.partition}/{row.offset} "
                      f"key={row.key} attempts={row.attempts} {state}", soft_wrap=True)
        console.print(f"    {row.error}", soft_wrap=True, markup=False, highlight=False)
    if not rows:
        console.print("no parked events")


@parked_events.command("retry")
def retry_parked(parked_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Apply a parked event again with its consumer's handler."""
    runtime = bootstrap_runtime(Settings())
    try:
        parked.retry(projector_for(runtime, parked.consumer_of(runtime.engine, parked_id)), parked_id)
    except KeyError:
        console.print(f"[red]no parked event {parked_id}[/]")
        raise typer.Exit(1) from None
    except parked.RetryRefused as refused:
        console.print(f"[red]parked event {parked_id} failed again:[/] {refused}")
        raise typer.Exit(1) from None
    console.print(f"parked event {parked_id} applied")


@app.command()
def replay(projection: Annotated[str, typer.Argument(help="identity, profile, segments or all")],
           dry_run: Annotated[bool, typer.Option(help="rebuild and compare, don't swap")] = False) -> None:
    """Rebuild projections from the start of the log into fresh tables and swap them in."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from services.runtime import replay as replays

    runtime = bootstrap_runtime(Settings())
    handlers = replays.replayable(runtime)
    tune_gc()
    names = list(handlers) if projection == "all" else [projection]
    if unknown := [n for n in names if n not in handlers]:
        console.print(f"[red]unknown projection {unknown[0]}[/]; known: {', '.join(handlers)}, all")
        raise typer.Exit(2)
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        tasks = {name: bar.add_task(name, total=None) for name in names}
        try:
            reports = replays.rebuild_all(runtime, names, swap=not dry_run, progress=lambda name, done, total:
                                          bar.update(tasks[name], completed=done, total=total))
        except replays.ReplayAborted as aborted:
            console.print(f"[red]replay aborted:[/] {aborted}")
            raise typer.Exit(1) from None
    for report in reports:
        differing = {t: d for t, d in report.differences.items() if any(d)}
        skipped = f" ({report.superseded} superseded by a later one of their key, not applied)" \
            if report.superseded else ""
        console.print(f"{report.consumer}: {report.records} records replayed{skipped} "
                      f"(peak memory {report.peak_memory_mb:,.0f} MB), "
                      f"{'swapped in' if report.swapped else 'not swapped (dry run)'}; "
                      + (f"rows that differed (live, rebuilt): {differing}" if differing
                         else "rebuilt tables equal the live ones"))


if __name__ == "__main__":
    app()
