"""``quickike qcd show``: switches, the secret's fingerprint (never the secret), per-SA tokens."""

from __future__ import annotations

import hashlib
import logging

import pytest

from engine.harness import Net, config, conn
from quickike.engine.config import StartAction
from quickike.qcd import Deployment, MemorySecretStore, QcdExtension, QcdPolicy, qcd_show
from quickike.qcd.store import decode_secrets

from .helpers import A_IP, B_IP, auto_child, bring_up, gateways, only_sa


def test_show_reports_fingerprint_generation_and_per_sa_tokens() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)
    status = qcd_show(ga.node.engine)  # type: ignore[union-attr]
    secret = decode_secrets(ga.store.data).current.secret  # type: ignore[attr-defined]
    assert status.enabled and status.generation == 1
    assert status.fingerprint == hashlib.sha256(secret).hexdigest()[:16]
    assert status.token_method == "spi-address" and status.deployment == "single"
    (sa,) = status.sas
    assert sa.peer_token_held and sa.tokens_held == 1 and sa.token_given_generation == 1
    assert sa.spi_i == only_sa(ga).spi_i.hex() and sa.qcd_state == ""
    text = "\n".join(status.lines())
    assert secret.hex() not in text and secret.hex() not in repr(status.as_dict())
    assert "peer token held (1)" in text and status.fingerprint in text
    ga.ext.rotate()
    again = ga.ext.status()
    assert again.generation == 2 and len(again.generations) == 2
    assert "+1 previous kept" in "\n".join(again.lines())


def test_show_without_qcd() -> None:
    net = Net()
    plain = net.add("A", A_IP, config(conn("gw", A_IP, B_IP, "a", "b")), 1)
    assert qcd_show(plain.engine).lines() == ["QCD: disabled"]
    off = net.add("B", B_IP, config(conn("gw", B_IP, A_IP, "b", "a")), 2,
                  extensions=[QcdExtension(QcdPolicy(enable=False), MemorySecretStore())])
    assert not qcd_show(off.engine).enabled


def test_hot_standby_with_spi_only_tokens_warns(caplog: pytest.LogCaptureFixture) -> None:
    from quickike.qcd import TokenMethod

    net = Net()
    with caplog.at_level(logging.WARNING, logger="quickike.qcd"):
        node = net.add("C", B_IP, config(conn("gw", B_IP, A_IP, "b", "a")), 1, extensions=[
            QcdExtension(QcdPolicy(deployment=Deployment.HOT_STANDBY,
                                   token_method=TokenMethod.SPI), MemorySecretStore())])
    assert any("hot-standby" in r.getMessage() and "spi-address" in r.getMessage()
               for r in caplog.records)
    assert qcd_show(node.engine).deployment == "hot-standby"
