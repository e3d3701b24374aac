"""The served catalog from stored rows: one unusable row leaves out only what depends on it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from inferenceops.admission.config import StaticPolicy
from inferenceops.config.source import platform_from_store
from inferenceops.platform.policy import NANOS, Price
from inferenceops.store.records import (
    CatalogData,
    DeploymentRecord,
    ModelRecord,
    PriceRecord,
    ProviderRecord,
)

AT = datetime(2026, 11, 1, tzinfo=UTC)


def deployment(name: str, **fields: object) -> DeploymentRecord:
    values: dict = {"id": f"dep_{name}", "name": name, "engine": "simulator", "served_model": "s",
                    "provider_id": None, "provider": None, "profile": "test-fast", "replicas": 1,
                    "seed": 0, "api_key_env": None, "timeouts": {}, "max_connections": 8,
                    "capacity": None, "queue": {}, "routing": "least_outstanding",
                    "managed_by": None, "created_at": AT,
                    "updated_at": AT}
    return DeploymentRecord(**{**values, **fields})


def model(name: str, deployment_name: str) -> ModelRecord:
    price = PriceRecord(f"prc_{name}", f"mdl_{name}", None, None, None, "1", "2", None, "0", AT)
    return ModelRecord(f"mdl_{name}", name, f"dep_{deployment_name}", deployment_name, "chat", (),
                       (price,), 256, None, AT, AT)


def test_a_broken_provider_leaves_out_its_deployments_and_their_models_only(
        caplog: pytest.LogCaptureFixture) -> None:
    broken = ProviderRecord("prov_x", "x", "not a url", "openai", None, True, None, AT, AT,
                            api_key="sk-stored")
    data = CatalogData(1, (broken,),
                       (deployment("via-x", engine="openai", provider="x", provider_id="prov_x",
                                   profile=None, replicas=None),
                        deployment("sim")),
                       (model("lost", "via-x"), model("kept", "sim")))
    with caplog.at_level(logging.ERROR, logger="inferenceops.control"):
        platform = platform_from_store(data, StaticPolicy("USD"), loopback_base_url="http://l:1",
                                       environ={})
    assert [m.name for m in platform.catalog.models] == ["kept"]
    kept = platform.catalog.model("kept")
    assert kept is not None and kept.max_output_tokens == 256 and kept.created == int(AT.timestamp())
    assert platform.prices is not None and set(platform.prices) == {"kept"}
    assert platform.prices["kept"].at(0.0) == Price(input_per_million=NANOS, output_per_million=2 * NANOS)
    assert [m.id for m in platform.simulators] == ["sim-0"]
    logged = caplog.text
    assert "stored provider 'x' left out" in logged
    assert "deployment 'via-x' left out: it needs 'x'" in logged
    assert "model 'lost' left out: it needs 'via-x'" in logged
