"""`python -m rollout_server --model PATH [...]`: serve a teacher model over HTTP (see --help).

Impossible settings end the process before it serves, with one line on stderr and exit code 2 (no
traceback): invalid option values, a --model that is neither a directory nor a hub id found on the hub or in
its cache (shared/hub.py), a model config that cannot be read, a --max-model-len the model cannot
serve, settings the engine refuses while starting (a KV cache too small for one --max-model-len sequence:
the engine process logs its own error first). The engine is started before the HTTP server binds.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn
from pydantic import ValidationError
from pydantic_settings import CliApp
from uvicorn._compat import asyncio_run

from rollout_server.app import create_app
from rollout_server.config import ServerConfig
from rollout_server.engine import ConfigError, TeacherEngine, check_config, resolve_model_option
from shared import reaper


def _fail(msg: str) -> None:
    print(f"rollout_server: error: {msg}", file=sys.stderr)
    sys.exit(2)


def _option_errors(e: ValidationError) -> str:
    return "; ".join(
        f"--{'.'.join(map(str, err['loc'])).replace('_', '-')}: {err['msg']}" for err in e.errors()
    )


async def _serve(config: ServerConfig, server_config: uvicorn.Config) -> None:
    try:
        engine = TeacherEngine.start(config)
    except ValueError as e:  # vLLM's refusal of settings (e.g. a KV cache too small for max_model_len)
        _fail(f"the engine did not start: {' '.join(str(e).split())}")
    except RuntimeError as e:  # the engine core process failed and logged its own error above
        if "initialization failed" not in str(e):
            raise
        _fail(f"the engine did not start (its error is logged above): {' '.join(str(e).split())}")
    try:
        server_config.app = create_app(config, engine)
        server = uvicorn.Server(server_config)
        serving = asyncio.ensure_future(server.serve())
        if config.port_file is not None:
            while not (server.started or serving.done()):
                await asyncio.sleep(0.05)
            if server.started:
                port = server.servers[0].sockets[0].getsockname()[1]
                written = config.port_file.with_name(config.port_file.name + ".tmp")
                written.write_text(f"{port}\n")
                written.replace(config.port_file)  # whole, never half written, when a reader sees it
        await serving
    finally:
        engine.shutdown()


def main(argv: list[str] | None = None) -> None:
    try:
        config = CliApp.run(ServerConfig, cli_args=argv)
    except ValidationError as e:
        _fail(_option_errors(e))
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = resolve_model_option(config)  # a hub id becomes its local snapshot, once, before the engine
        check_config(config)
    except ConfigError as e:
        _fail(str(e))
    reaper.start()  # vLLM's EngineCore process dies with the server, however the server dies
    server_config = uvicorn.Config(
        None,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        timeout_graceful_shutdown=10,  # a stalled client must not hold up a stop (SIGTERM) for ever
    )
    asyncio_run(_serve(config, server_config), loop_factory=server_config.get_loop_factory())


if __name__ == "__main__":
    main()
