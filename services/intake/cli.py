from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("serve")
def serve(host: str = typer.Option(None, help="Listen address (default from CITYOPS_INTAKE_HTTP_HOST)."),
          port: int = typer.Option(None, help="Listen port (default from CITYOPS_INTAKE_HTTP_PORT, 8080).")) -> None:
    """Serve the hotline HTTP API, the Open311 edge and the machine-channel consumer (OpenAPI docs at /docs)."""
    import uvicorn

    from services.common.collector import freeze_batch_survivors_as_configured, frozen_once_serving
    from services.common.priority import yield_cpu_as_configured

    from .app import create_app
    from .settings import IntakeSettings

    settings = IntakeSettings()
    app = create_app(settings)
    if app.state.auth_problem is not None:
        typer.echo(f"intake refuses to start: {app.state.auth_problem}", err=True)
        raise typer.Exit(2)
    yield_cpu_as_configured([settings])
    freeze_batch_survivors_as_configured([settings])
    uvicorn.run(frozen_once_serving(app), host=host or settings.http_host, port=port or settings.http_port,
                log_level="warning", access_log=False)
