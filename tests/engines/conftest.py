"""Fixtures for the engine tier: two real vLLM replicas (CPU) behind a real gateway.

Started once for the package (and stopped when its last test is done, so the
rest of the suite does not run beside two idle engines), in order: the tiny model (built or taken from the
cache), two vLLM replicas of it on free loopback ports, each worker bound to
its own core, both with LoRA enabled and runtime adapter loading allowed; then
a gateway whose platform file has one ``openai``-engine deployment over the
two, and a team key granted its model. Tests talk to the gateway with the
official ``openai`` SDK, and to a replica directly to compare.

The tier is skipped, with the reason, only when the machine lacks the memory or
disk for it (tests/engines/preflight.py; ``make test`` decides before installing
and passes its verdict in ``INFERENCEOPS_ENGINES_SKIP``). A missing virtualenv,
a model that fails to build, or a replica that is not healthy in time fails.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.engines import _vllm
from tests.engines._vllm import PUBLIC_MODEL, SERVED_MODEL, VllmServer
from tests.integration._harness import ADMIN_KEY, Gateway, platform_yaml

HERE = Path(__file__).parent
DEPLOYMENT = "tiny-vllm"
#: Per test, and so for the first one's share of the session set-up too: the model build,
#: two replicas starting (READY_DEADLINE_S) and the gateway.
TEST_TIMEOUT_S = 420
KEY_DEADLINE_S = 10.0

#: What the session set-up took, for the summary at the end of the run.
TIMINGS: dict[str, str] = {}
_SERVERS: list[VllmServer | Gateway] = []


def _in_tier(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tier = [item for item in items if _in_tier(item)]
    if not tier:
        return
    reason = _vllm.skip_reason()
    for item in tier:
        item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"engine tier: {reason}"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "engine tier set-up")
        for what, took in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {took}")


@pytest.fixture(scope="package")
def tiny_model() -> Path:
    """The cached build: ``model/`` (tiny Llama + tokenizer) and ``lora/`` (an adapter for it)."""
    _vllm.require_venv()
    started = time.monotonic()
    build = _vllm.build_models()
    TIMINGS["tiny model (built or cached)"] = f"{time.monotonic() - started:.1f} s, {build}"
    return build


@pytest.fixture(scope="package")
def replicas(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[list[VllmServer]]:
    """Two vLLM replicas of the tiny model, started together, each worker on its own core."""
    workdir = tmp_path_factory.mktemp("vllm")
    # LoRA with runtime loading; priority scheduling (requests carry a priority, lower first),
    # as a platform that runs batches beside interactive traffic would start them.
    lora = ("--enable-lora", "--max-lora-rank", "8", "--max-loras", "2",
            "--scheduling-policy", "priority")
    servers: list[VllmServer] = []
    try:
        for i in range(2):
            servers.append(VllmServer(tiny_model / "model", workdir, name=f"vllm-{i}",
                                      cpus=_core(i), args=lora))
            _SERVERS.append(servers[-1])
        for server in servers:
            server.wait_ready()
        TIMINGS["vLLM replicas healthy after"] = ", ".join(
            f"{s.ready_after_s:.1f} s" for s in servers)
        TIMINGS["vLLM replicas' memory (RSS, with children)"] = ", ".join(
            f"{s.rss_mb():.0f} MB" for s in servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _core(i: int) -> str | None:
    """Core ``i`` for replica ``i`` when there are enough (vLLM's default puts both on core 0)."""
    cores = sorted(os.sched_getaffinity(0))
    return str(cores[i]) if len(cores) >= 2 else None


def start_gateway(workdir: Path, replicas: list[VllmServer], *, name: str,
                  deployment: str = DEPLOYMENT, routing: str | None = None,
                  env: dict[str, str] | None = None,
                  scheduling_policy: str | None = None) -> Gateway:
    """A gateway with one ``openai``-engine deployment over ``replicas`` (its replica ids are
    ``<deployment>-<i>``), ready; its output is appended to a failing test's report."""
    spec: dict[str, Any] = {"name": deployment, "engine": "openai", "served_model": SERVED_MODEL,
                            "replicas": [{"url": r.base_url} for r in replicas],
                            "timeouts": {"connect_s": 5, "first_byte_s": 60}}
    if routing is not None:
        spec["routing"] = routing
    if scheduling_policy is not None:
        spec["scheduling_policy"] = scheduling_policy
    config = platform_yaml([spec], [{"name": PUBLIC_MODEL, "deployment": deployment}])
    gw = Gateway(workdir, config=config, env=env, name=name)
    _SERVERS.append(gw)
    try:
        return gw.wait_ready()
    except BaseException:
        stop_gateway(gw)
        raise


def stop_gateway(gw: Gateway) -> None:
    gw.stop()
    _SERVERS.remove(gw)


@pytest.fixture(scope="package")
def engine_gateway(tmp_path_factory: pytest.TempPathFactory,
                   replicas: list[VllmServer]) -> Iterator[Gateway]:
    """A gateway with one ``openai``-engine deployment whose replicas are the two vLLM servers."""
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), replicas, name="engines-gateway")
    try:
        yield gw
    finally:
        stop_gateway(gw)


def _admin(gw: Gateway, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{gw.origin}/admin/api/v1{path}", method=method,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None
    return orjson.loads(raw) if raw else None


@pytest.fixture(scope="package")
def team_key(engine_gateway: Gateway) -> str:
    """A member's inference key in a team granted the tiny model (not the admin key)."""
    return make_team_key(engine_gateway)


def make_team_key(gw: Gateway, *, team_name: str = "engine-tier",
                  grant: str = PUBLIC_MODEL) -> str:
    """A team granted ``grant`` (a model or an adapter; the tiny model by default), a member
    and their inference key, made through ``gw``'s admin API; returned once the data plane
    accepts it."""
    team = _admin(gw, "POST", "/teams", {"name": team_name})
    user = _admin(gw, "POST", "/users", {"email": f"{team_name}@example.com"})
    _admin(gw, "PUT", f"/teams/{team['id']}/members/{user['id']}", {"role": "member"})
    _admin(gw, "PUT", f"/grants/{team['id']}/{grant}")
    created = _admin(gw, "POST", "/keys", {"name": team_name, "team_id": team["id"],
                                           "user_id": user["id"], "scopes": ["inference"]})
    secret = str(created["secret"])
    end = time.monotonic() + KEY_DEADLINE_S
    with openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0, timeout=10) as sdk:
        while True:  # the data plane sees store changes through its snapshot
            try:
                if grant in {m.id for m in sdk.models.list()}:
                    return secret
            except openai.APIStatusError:
                pass
            assert time.monotonic() < end, f"the team key did not work within {KEY_DEADLINE_S:g}s"
            time.sleep(0.1)


@pytest.fixture(scope="package")
def client(engine_gateway: Gateway, team_key: str) -> Iterator[openai.OpenAI]:
    """The gateway, as the team sees it. No SDK retries: a test sees what one request got."""
    with openai.OpenAI(base_url=engine_gateway.base_url, api_key=team_key, max_retries=0,
                       timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="package")
def direct(replicas: list[VllmServer]) -> Iterator[list[openai.OpenAI]]:
    """One SDK client per replica, bypassing the gateway (vLLM runs without a key)."""
    clients = [openai.OpenAI(base_url=r.base_url, api_key="unused", max_retries=0, timeout=120)
               for r in replicas]
    yield clients
    for sdk in clients:
        sdk.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and _in_tier(item):
        for server in _SERVERS:
            report.sections.append((f"{server.name} (port {server.port}) output", server.tail()))
    return report
