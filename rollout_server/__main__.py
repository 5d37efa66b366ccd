"""`python -m rollout_server --model PATH [...]`: serve a teacher model over HTTP (see --help)."""

from __future__ import annotations

import logging

import uvicorn
from pydantic_settings import CliApp

from rollout_server.app import create_app
from rollout_server.config import ServerConfig


def main(argv: list[str] | None = None) -> None:
    config = CliApp.run(ServerConfig, cli_args=argv)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=config.log_level)


if __name__ == "__main__":
    main()
