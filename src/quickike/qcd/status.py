"""What ``quickike qcd show`` prints: QCD's switches, the secret's identity, per-SA tokens.

Only fingerprints (a SHA-256 prefix) of secrets are shown, never a secret or
a token, so the output can be pasted into a ticket; equal fingerprints on two
gateways mean a hot-standby pair really shares its secret.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .extension import QcdExtension
from .state import peek_state

if TYPE_CHECKING:
    from ..engine.engine import Engine


@dataclass(frozen=True, slots=True)
class GenerationStatus:
    number: int
    fingerprint: str
    created: float


@dataclass(frozen=True, slots=True)
class SaStatus:
    ike_uid: int
    name: str
    spi_i: str
    spi_r: str
    remote: str
    state: str
    #: we hold a token of the peer's for this SA (we can take its crash proof)
    peer_token_held: bool
    tokens_held: int
    #: the generation of our secret the peer's copy of our token was made with (None: none given)
    token_given_generation: int | None
    #: "" normally, "accepting" while a valid token waits out its delay, "replacing" after
    qcd_state: str


@dataclass(frozen=True, slots=True)
class QcdStatus:
    enabled: bool
    deployment: str = ""
    token_method: str = ""
    token_length: int = 0
    generation: int | None = None
    fingerprint: str = ""
    generations: tuple[GenerationStatus, ...] = ()
    child_spi_map: bool = False
    sas: tuple[SaStatus, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        if not self.enabled:
            return ["QCD: disabled"]
        out = [
            f"QCD: enabled ({self.deployment}, token method {self.token_method}, "
            f"{self.token_length} octets{', CHILD SPI map' if self.child_spi_map else ''})",
            f"secret: generation {self.generation}, fingerprint {self.fingerprint}"
            + (f" (+{len(self.generations) - 1} previous kept)" if len(self.generations) > 1 else ""),
        ]
        for sa in self.sas:
            held = f"peer token held ({sa.tokens_held})" if sa.peer_token_held else "no peer token"
            given = ("our token given (generation "
                     f"{sa.token_given_generation})" if sa.token_given_generation else "no token given")
            extra = f", {sa.qcd_state}" if sa.qcd_state else ""
            out.append(f"  {sa.name}#{sa.ike_uid} {sa.state} {sa.spi_i}_i {sa.spi_r}_r "
                       f"{sa.remote}: {held}, {given}{extra}")
        return out


def find_extension(engine: Engine) -> QcdExtension | None:
    for ext in engine.extensions:
        if isinstance(ext, QcdExtension):
            return ext
    return None


def qcd_show(engine: Engine) -> QcdStatus:
    ext = find_extension(engine)
    if ext is None or not ext.enabled or ext.keyring is None:
        return QcdStatus(enabled=False)
    p = ext.policy
    secrets = ext.keyring.secrets
    sas: list[SaStatus] = []
    for sa in engine.ike_sas():
        st = peek_state(sa)
        state = ""
        if st is not None and st.acceptance is not None:
            state = "accepting"
        elif st is not None and st.replacing:
            state = "replacing"
        sas.append(SaStatus(
            sa.uid, sa.name, sa.spi_i.hex(), sa.spi_r.hex(), sa.remote[0], sa.state.value,
            bool(st and st.peer_digests), len(st.peer_digests) if st else 0,
            st.given_generation if st else None, state,
        ))
    return QcdStatus(
        enabled=True,
        deployment=p.deployment.value,
        token_method=p.token_method.value,
        token_length=p.token_length,
        generation=secrets.current.number,
        fingerprint=secrets.current.fingerprint,
        generations=tuple(GenerationStatus(g.number, g.fingerprint, g.created)
                          for g in secrets.generations),
        child_spi_map=ext.spi_map is not None,
        sas=tuple(sas),
    )


__all__ = ["GenerationStatus", "QcdStatus", "SaStatus", "find_extension", "qcd_show"]
