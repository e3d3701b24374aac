"""Builds the application from settings: the one place long-lived objects are made.

``create_app`` is the factory the ASGI servers call in each worker process; it
reads ``Settings`` from the environment (the CLI puts its flags there first).
"""

from __future__ import annotations

import logging

from inferenceops.bootstrap import load_or_create_key
from inferenceops.config import ConfigError, Platform, load_platform
from inferenceops.engines.openai_compat import OpenAICompatClient
from inferenceops.gateway.app import GatewayApp
from inferenceops.gateway.auth import KeyAuthenticator, key_digest
from inferenceops.gateway.http import ASGIApp
from inferenceops.gateway.proxy import Forwarder
from inferenceops.gateway.state import GatewayState
from inferenceops.platform import Principal
from inferenceops.routing import LeastOutstanding
from inferenceops.settings import Settings


def build_simulators(platform: Platform) -> dict[str, ASGIApp]:
    if not platform.simulators:
        return {}
    from inferenceops.engines.simulator import build_simulator_app, load_profile

    apps: dict[str, ASGIApp] = {}
    for mount in platform.simulators:
        try:
            profile = load_profile(mount.profile)
        except ValueError as exc:
            raise ConfigError(f"{platform.source}: deployment replica {mount.id}: {exc}") from None
        apps[mount.id] = build_simulator_app(profile, model=mount.served_model, seed=mount.seed)
    return apps


def build_state(settings: Settings, platform: Platform, admin_key: str) -> GatewayState:
    client = OpenAICompatClient(platform.snapshot.deployments.values())
    authenticator = KeyAuthenticator({key_digest(admin_key): Principal("bootstrap-admin")})
    return GatewayState(
        snapshot=platform.snapshot,
        authenticator=authenticator,
        client=client,
        forwarder=Forwarder(client, LeastOutstanding()),
        max_body_bytes=settings.max_body_bytes,
        max_tokens_limit=settings.max_tokens_limit,
        simulators=build_simulators(platform),
    )


def create_app(settings: Settings | None = None) -> GatewayApp:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    platform = load_platform(settings.config, loopback_base_url=settings.loopback_base_url)
    if settings.admin_key is not None:
        admin_key = settings.admin_key.get_secret_value()
    else:
        admin_key, _ = load_or_create_key(settings.data_dir)
    return GatewayApp(build_state(settings, platform, admin_key))
