"""Serving the apiserver app over HTTPS with uvicorn (uvloop + httptools when available)."""
from __future__ import annotations

import logging

import uvicorn

from apiserver.app import Settings, create_app

logger = logging.getLogger(__name__)


def serve(settings: Settings, *, bind_address: str, cert_file: str, key_file: str) -> None:
    app = create_app(settings)
    config = uvicorn.Config(app, host=bind_address, port=settings.secure_port, ssl_certfile=cert_file,
                            ssl_keyfile=key_file, loop="auto", http="auto", access_log=False, log_level="warning",
                            lifespan="on", timeout_keep_alive=120, backlog=4096,
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run()
