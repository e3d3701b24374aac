"""Start-up validation: a bad platform file or bad settings stop the server at once.

Proves ``inferenceops serve`` exits with code 2 within seconds, without a
traceback and without starting to serve, and that stderr says where the
problem is (file, line, field or setting) and how to fix it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration._harness import free_port, gateway_env, serve_command

pytestmark = pytest.mark.integration

GOOD_DEPLOYMENT = """\
deployments:
  - name: a
    engine: openai
    served_model: ok
    replicas: [{url: "http://127.0.0.1:9/v1"}]
"""

CONFIGS: dict[str, tuple[str, list[str]]] = {
    # name: (platform YAML, fragments stderr must contain)
    "malformed-yaml": (
        GOOD_DEPLOYMENT.replace('/v1"}]', '/v1"}') + "models:\n  - name: m\n    deployment: a\n",
        ["line 6", "not valid YAML"]),
    "unknown-engine": (
        GOOD_DEPLOYMENT.replace("engine: openai", "engine: tgi")
        + "models:\n  - name: m\n    deployment: a\n",
        ["line 3", "deployments[0].engine", "'simulator' or 'openai'"]),
    "undefined-deployment": (
        GOOD_DEPLOYMENT + "models:\n  - name: m\n    deployment: a\n"
        "  - name: m2\n    deployment: nope\n",
        ["'m2'", "'nope'", "not defined", "defined: a"]),
    "unset-api-key-env": (
        GOOD_DEPLOYMENT + "    api_key_env: IO_IT_SURELY_UNSET\n"
        "models:\n  - name: m\n    deployment: a\n",
        ["deployments[0].api_key_env", "IO_IT_SURELY_UNSET", "not set", "export it"]),
    "every-error-at-once": (
        GOOD_DEPLOYMENT + "    timeouts: {first_byte_s: -1, bogus: 2}\n"
        "models:\n  - name: m\n    deployment: a\n    type: rerank\n",
        ["line 6: deployments[0].timeouts.first_byte_s", "greater than 0",
         "line 6: deployments[0].timeouts.bogus", "Extra inputs",
         "line 10: models[0].type", "'chat' or 'embedding'"]),
    "simulator-without-profile": (
        "deployments:\n  - name: s\n    engine: simulator\n    served_model: x\n"
        "models:\n  - name: m\n    deployment: s\n",
        ["line 2: deployments[0]", "needs 'profile:'"]),
    "unknown-simulator-profile": (
        "deployments:\n  - name: s\n    engine: simulator\n    served_model: x\n"
        "    profile: no-such-profile\nmodels:\n  - name: m\n    deployment: s\n",
        ["no-such-profile", "test-fast"]),
    "duplicate-alias": (
        GOOD_DEPLOYMENT + "models:\n  - name: m\n    deployment: a\n"
        "  - name: n\n    deployment: a\n    aliases: [m]\n",
        ["'m'", "used by both"]),
    "empty-file": ("", ["line 1", "deployments:", "models:"]),
}


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           config: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [*args, "--data-dir", str(tmp_path / "data")]
    if config is not None:
        path = tmp_path / "platform.yaml"
        path.write_text(config, encoding="utf-8")
        command += ["--config", str(path)]
    started = time.monotonic()
    result = subprocess.run(serve_command(*command), cwd=tmp_path, env=gateway_env(env),
                            capture_output=True, text=True, timeout=30, check=False)
    assert time.monotonic() - started < 15
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "base URL" not in result.stdout, result.stdout  # never got as far as serving
    return result


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bad_platform_config_exits_2_naming_the_problem(tmp_path: Path, name: str) -> None:
    text, fragments = CONFIGS[name]
    stderr = _serve(tmp_path, "--port", str(free_port()), config=text).stderr
    assert "platform.yaml" in stderr  # names the file
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)


def test_undefined_deployment_names_its_line_and_field(tmp_path: Path) -> None:
    text, _ = CONFIGS["undefined-deployment"]
    stderr = _serve(tmp_path, "--port", str(free_port()), config=text).stderr
    assert "line 10" in stderr and "models[1].deployment" in stderr, stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    stderr = _serve(tmp_path, "--config", str(tmp_path / "absent.yaml")).stderr
    assert "absent.yaml" in stderr and "does not exist" in stderr


@pytest.mark.parametrize(("args", "env", "fragments"), [
    ((), {"INFERENCEOPS_PORT": "notaport"}, ["INFERENCEOPS_PORT", "--port", "valid integer"]),
    (("--workers", "0"), {}, ["workers", "INFERENCEOPS_WORKERS", "greater than or equal to 1"]),
    (("--server", "nginx"), {}, ["server", "'granian' or 'uvicorn'"]),
    ((), {"INFERENCEOPS_LOG_LEVEL": "loud"}, ["INFERENCEOPS_LOG_LEVEL"]),
], ids=["port-env", "workers-flag", "server-flag", "log-level-env"])
def test_bad_settings_exit_2_naming_the_setting(tmp_path: Path, args: tuple[str, ...],
                                                env: dict[str, str], fragments: list[str]) -> None:
    stderr = _serve(tmp_path, *args, env=env).stderr
    assert "invalid settings" in stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)


@pytest.mark.parametrize(("env", "bogus_flag"), [
    ({"INFERENCEOPS_SHUTDOWN_TIMEOUT_S": "-1"}, "--shutdown-timeout-s"),
    ({"INFERENCEOPS_MAX_BODY_BYTES": "10"}, "--max-body-bytes"),
], ids=["shutdown-timeout", "max-body-bytes"])
def test_bad_setting_message_names_only_real_flags(tmp_path: Path, env: dict[str, str],
                                                   bogus_flag: str) -> None:
    stderr = _serve(tmp_path, env=env).stderr
    assert next(iter(env)) in stderr  # the environment variable is named (this part works)
    assert bogus_flag not in stderr, stderr
