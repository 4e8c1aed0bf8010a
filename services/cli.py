"""`rapport`: run Rapport on a laptop (`up`) or one service per deployment (`serve`)."""
from __future__ import annotations

import logging
from enum import Enum
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from services import migrations
from services.first_start import ensure_credentials
from services.runtime.access import SCOPES, create_token
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import writing
from services.runtime.runner import SERVICE_NAMES, bootstrap_services, build_app
from services.runtime.settings import Settings

app = typer.Typer(help="Rapport, an event-sourced customer data platform.", no_args_is_help=True)
console = Console()
ServiceName = Enum("ServiceName", {name: name for name in SERVICE_NAMES}, type=str)


@app.command()
def up(host: Annotated[str, typer.Option(help="address to listen on")] = "",
       port: Annotated[int, typer.Option(help="port to listen on (0: settings)")] = 0) -> None:
    """Every service in one process: SQLite under ./.rapport/ and the embedded log by default."""
    settings = Settings()
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    credentials = ensure_credentials(runtime.engine, settings.data_dir)
    host, port = host or settings.http_host, port or settings.http_port
    console.print(f"[bold]Rapport[/] is up on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    console.print(f"  write key (HTTP Basic username for /v1/track, /v1/identify): {credentials['write_key']}")
    console.print(f"  admin access token (Authorization: Bearer ...): {credentials['admin_token']}")
    _serve(build_app(runtime, bootstrap_services(runtime)), host, port)


@app.command()
def serve(service: Annotated[ServiceName, typer.Argument(help="which service to run")],
          host: Annotated[str, typer.Option()] = "", port: Annotated[int, typer.Option()] = 0) -> None:
    """One service, as a deployment runs it (run `rapport migrate` first)."""
    settings = Settings()
    runtime = bootstrap_runtime(settings)
    if not migrations.at_head(runtime.engine):
        console.print("[red]the database is not migrated to head: run `rapport migrate` first[/]")
        raise typer.Exit(2)
    app_ = build_app(runtime, bootstrap_services(runtime, [service.value]))
    _serve(app_, host or settings.http_host, port or settings.http_port)


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


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    runtime = bootstrap_runtime(Settings())
    migrations.upgrade(runtime.engine)
    console.print("database migrated to head")


def _serve(app_, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(app_, host=host, port=port, log_level="info")


if __name__ == "__main__":
    app()
