"""strongSwan 5.9.8's own load test, charon to charon, for the quickike comparison.

    sudo python bench/bench_strongswan_loadtester.py [--count 11000] [--window 32] [--pin]
                                                     [--table-size N] [--json FILE]

Debian does not ship the load-tester plugin, so the first run builds strongSwan from
Debian's source package (``apt-get source strongswan``; deb-src is enabled in
/etc/apt/sources.list.d if it is not) with ``--enable-load-tester`` and only the plugins the
test loads, into ``bench/.cache/strongswan-5.9.8-ldt`` (about a minute on 2 cores; never
committed, see .gitignore). ``--build-only`` stops there.

Then two ``charon-systemd`` run in two network namespaces joined by a veth pair
(10.200.0.1 -- 10.200.0.2, ports 500/4500), the same wire as ``bench/bench_daemon.py``:

* responder: the load-tester's responder configuration (``initiators = 0``);
* initiator: ``initiators = 4`` threads, ``iterations`` adding up to ``--count``,
  ``init_limit = --window`` (IKE SAs not yet established), ``delay = 1`` ms (the plugin
  busy-waits on ``init_limit`` without a delay).

Both: PSK (``initiator_auth = responder_auth = psk``), ``proposal =
aes128gcm16-prfsha256-x25519``, ``esp = aes128gcm16``, one CHILD per IKE SA,
``fake_kernel = yes`` (CHILD SAs negotiated, nothing installed: there is no kernel ESP here),
``dos_protection = no`` (no cookies, no per-IP half-open block, as in the plugin's documented
example), log level 1 (charon's default) to a file. ``ikesa_table_size`` is charon's default
(1) unless ``--table-size`` is given. Progress comes from VICI ``stats`` on the initiator,
polled every 20 ms (established = total - half-open); memory is the RSS of each charon.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_daemon import (
    ESP,
    IP_I,
    IP_R,
    PROPOSAL,
    PSK,
    Probe,
    Samples,
    print_result,
    summarise,
    taskset,
    wire,
)

from quickike.daemon.loadgen import rss_kb
from quickike.lab import Lab
from quickike.lab.charon import render_tree
from quickike.lab.netns import LabProcess, Namespace

CACHE = Path(__file__).resolve().parent / ".cache"
PREFIX = CACHE / "strongswan-5.9.8-ldt"
VERSION = "5.9.8"
# load-tester before kernel-netlink: its fake kernel-ipsec must register first (fake_kernel)
PLUGINS = ("random nonce openssl pem pkcs1 x509 pubkey kdf hmac sha1 sha2 aes gcm curve25519 "
           "load-tester kernel-netlink socket-default vici")
CONFIGURE = (
    "--disable-defaults", "--enable-systemd", "--enable-ikev2", "--disable-ikev1",
    "--enable-load-tester", "--enable-openssl", "--enable-random", "--enable-nonce",
    "--enable-kernel-netlink", "--enable-socket-default", "--enable-vici", "--enable-pem",
    "--enable-pkcs1", "--enable-x509", "--enable-pubkey", "--enable-kdf", "--enable-hmac",
    "--enable-sha1", "--enable-sha2", "--enable-aes", "--enable-gcm", "--enable-curve25519",
)  # fmt: skip
BUILD_DEPS = ("build-essential", "pkg-config", "libssl-dev", "libgmp-dev", "libsystemd-dev",
              "dpkg-dev")  # fmt: skip
DEB_SRC = Path("/etc/apt/sources.list.d/quickike-bench-deb-src.sources")


# ---------------------------------------------------------------------------- build


def _sh(argv: list[str], cwd: Path | None = None, log: Path | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    with open(log, "ab") if log else open(os.devnull, "wb") as out:
        done = subprocess.run(argv, cwd=cwd, stdout=out if log else None,
                              stderr=subprocess.STDOUT if log else None, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode})\n{tail}")


def _enable_deb_src() -> None:
    """Add deb-src lines for the machine's Debian sources if apt has none."""
    listed = subprocess.run(["apt-cache", "showsrc", "strongswan"], capture_output=True, text=True)
    if "Package: strongswan" in listed.stdout:
        return
    DEB_SRC.write_text(
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    _sh(["apt-get", "update", "-q"])


def _fetch_source(src: Path) -> Path:
    """Debian's strongswan 5.9.8 source, patches applied; the newest version apt can fetch."""
    found = sorted(src.glob(f"strongswan-{VERSION}/configure"))
    if found:
        return found[0].parent
    _enable_deb_src()
    src.mkdir(parents=True, exist_ok=True)
    listed = subprocess.run(["apt-cache", "showsrc", "strongswan"], capture_output=True,
                            text=True).stdout
    versions = [line.split()[1] for line in listed.splitlines() if line.startswith("Version:")]
    versions = sorted({v for v in versions if v.startswith(VERSION)}, reverse=True)
    for v in versions:  # the security pool may list a version whose source it does not serve
        done = subprocess.run(["apt-get", "source", "-q", f"strongswan={v}"], cwd=src,
                              capture_output=True, text=True)
        if done.returncode == 0 and (src / f"strongswan-{VERSION}" / "configure").exists():
            (src / "debian-version").write_text(v + "\n")
            return src / f"strongswan-{VERSION}"
        print(f"apt-get source strongswan={v} failed: {done.stderr.strip()[-300:]}", flush=True)
    raise SystemExit(f"could not fetch strongswan {VERSION} sources with apt-get source")


def ensure_build(prefix: Path = PREFIX) -> Path:
    """charon-systemd with the load-tester plugin in ``prefix`` (built once, then reused)."""
    charon = prefix / "sbin" / "charon-systemd"
    if charon.exists() and (prefix / "lib/ipsec/plugins/libstrongswan-load-tester.so").exists():
        return prefix
    t0 = time.monotonic()
    missing = [p for p in BUILD_DEPS if subprocess.run(
        ["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        _sh(["apt-get", "install", "-y", "--no-install-recommends", *missing])
    src = _fetch_source(CACHE / "src")
    log = CACHE / "build.log"
    _sh(["./configure", f"--prefix={prefix}", f"--sysconfdir={prefix}/etc",
         f"--with-piddir={prefix}/run", *CONFIGURE], cwd=src, log=log)
    _sh(["make", f"-j{os.cpu_count() or 2}"], cwd=src, log=log)
    _sh(["make", "install"], cwd=src, log=log)
    print(f"built strongSwan {VERSION} with load-tester in {time.monotonic() - t0:.0f} s "
          f"({prefix})", flush=True)
    return prefix


# ---------------------------------------------------------------------------- run


def charon_conf(work: Path, *, initiator: bool, count: int, window: int, initiators: int,
                table_size: int | None, log_level: int = 1) -> Path:
    d = work / ("charon-initiator" if initiator else "charon-responder")
    d.mkdir()
    load_tester: dict[str, Any] = {
        "enable": True,
        "initiator": IP_I,
        "responder": IP_R,
        "proposal": PROPOSAL,
        "esp": ESP,
        "initiator_auth": "psk",
        "responder_auth": "psk",
        "preshared_key": PSK,
        "fake_kernel": True,
        "child_rekey": 0,
        "ike_rekey": 0,
        "socket": f"unix://{d}/charon.ldt",
    }
    if initiator:
        load_tester.update(initiators=initiators, iterations=count // initiators,
                           init_limit=window, delay=1)
    daemon: dict[str, Any] = {
        "load_modular": False,
        "load": PLUGINS,
        "dos_protection": False,
        "reuse_ikesa": False,
        "install_routes": False,
        "journal": {"default": -1},
        "filelog": {"bench": {"path": str(d / "charon.log"), "time_format": "%H:%M:%S",
                              "time_add_ms": True, "default": log_level}},
        "plugins": {"vici": {"socket": f"unix://{d}/charon.vici"}, "load-tester": load_tester},
    }
    if table_size:
        daemon["ikesa_table_size"] = table_size
        daemon["ikesa_table_segments"] = 4
    conf = d / "strongswan.conf"
    conf.write_text(render_tree({"charon-systemd": daemon}) + "\n")
    return conf


def _vici(path: Path, timeout: float, proc: LabProcess) -> Any:
    import vici

    end = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"charon exited {proc.returncode}:\n{proc.output()[-3000:]}")
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            return vici.Session(s)
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError(f"no VICI socket at {path} after {timeout} s") from None
            time.sleep(0.02)


def _established(session: Any) -> tuple[int, int]:
    st = session.stats()
    ike = st["ikesas"]
    total, half = int(ike["total"]), int(ike["half-open"])
    return total - half, half


def _spawn_charon(ns: Namespace, prefix: Path, conf: Path, pin: bool, cpu: int) -> LabProcess:
    env = {**os.environ, "STRONGSWAN_CONF": str(conf)}
    return ns.spawn([*taskset(pin, cpu), str(prefix / "sbin" / "charon-systemd")], env=env,
                    label=f"charon-{conf.parent.name}")


def run_charon_pair(prefix: Path, count: int, window: int, *, pin: bool, initiators: int = 4,
                    table_size: int | None = None, log_level: int = 1, sample: float = 0.02,
                    keep: bool = False) -> dict[str, Any]:
    count -= count % initiators
    with Lab(keep_workdir=keep) as lab:
        ns_i, ns_r = wire(lab)
        conf_r = charon_conf(lab.workdir, initiator=False, count=count, window=window,
                             initiators=initiators, table_size=table_size, log_level=log_level)
        conf_i = charon_conf(lab.workdir, initiator=True, count=count, window=window,
                             initiators=initiators, table_size=table_size, log_level=log_level)
        resp = _spawn_charon(ns_r, prefix, conf_r, pin, 1)
        s_r = _vici(conf_r.parent / "charon.vici", 20, resp)
        time.sleep(0.3)
        rss_idle = rss_kb(resp.pid)
        init = _spawn_charon(ns_i, prefix, conf_i, pin, 0)
        s_i = _vici(conf_i.parent / "charon.vici", 20, init)
        established = Samples()
        p_i, p_r = Probe(init.pid), Probe(resp.pid)
        deadline = time.monotonic() + max(120.0, count / 50)
        last_change = time.monotonic()
        while True:
            up, half = _established(s_i)
            now = time.monotonic()
            established.add(now, up)
            p_i.sample(now)
            p_r.sample(now)
            if len(established.v) > 1 and established.v[-1] != established.v[-2]:
                last_change = now
            if up >= count:
                break
            if now > deadline or now - last_change > 30:
                raise RuntimeError(f"charon: {up} of {count} SAs up ({half} half-open), stalled\n"
                                   f"{lab.describe()}")
            time.sleep(sample)
        p_r.sample(time.monotonic())
        resp_up, _ = _established(s_r)
        result = summarise(f"strongSwan {VERSION} load-tester", established, p_i, p_r, count,
                           rss_idle, {"window": window, "pinned": pin, "initiators": initiators,
                                      "ikesa_table_size": table_size or 1, "log_level": log_level,
                                      "responder_established": resp_up,
                                      "source": _debian_version()})
        init.stop(10.0)
        resp.stop(10.0)
        for conf in (conf_i, conf_r):  # the log is complete once charon has stopped
            if log_level >= 0:  # "CHILD_SA ... established" is a level-0 line
                _check_children(conf.parent / "charon.log", count)
        return result


def _check_children(log: Path, count: int, timeout: float = 2.0) -> None:
    """Every CHILD SA must be up (charon keeps an IKE SA whose CHILD failed)."""
    end = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        if "failed to establish CHILD_SA" in text:
            raise RuntimeError(f"charon: a CHILD SA failed ({log})")
        children = len(re.findall(r"CHILD_SA load-test\{\d+\} established", text))
        if children >= count:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"charon: {children} of {count} CHILD SAs established ({log})")
        time.sleep(0.2)


def _debian_version() -> str:
    f = CACHE / "src" / "debian-version"
    if f.exists():
        return "Debian source " + f.read_text().strip()
    dsc = sorted((CACHE / "src").glob("strongswan_*.dsc"))
    return "Debian source " + dsc[-1].name.removeprefix("strongswan_").removesuffix(".dsc") \
        if dsc else VERSION


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=11000, help="IKE SAs to set up (>= 7000)")
    ap.add_argument("--window", type=int, default=32, help="init_limit: setups in flight")
    ap.add_argument("--initiators", type=int, default=4, help="load-tester initiator threads")
    ap.add_argument("--pin", action="store_true", help="initiator on CPU 0, responder on CPU 1")
    ap.add_argument("--table-size", type=int, help="charon.ikesa_table_size (default: charon's, 1)")
    ap.add_argument("--log-level", type=int, default=1,
                    help="filelog default level (charon's default 1; -1 silent, 0 basic)")
    ap.add_argument("--build-only", action="store_true", help="build and stop")
    ap.add_argument("--rebuild", action="store_true", help="remove the cached build first")
    ap.add_argument("--json", type=Path, help="write the result here")
    ap.add_argument("--keep", action="store_true", help="keep the lab's work directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (apt, network namespaces)")
    if args.rebuild and PREFIX.exists():
        shutil.rmtree(PREFIX)
    prefix = ensure_build()
    if args.build_only:
        return
    result = run_charon_pair(prefix, args.count, args.window, pin=args.pin,
                             initiators=args.initiators, table_size=args.table_size,
                             log_level=args.log_level, keep=args.keep)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                         "results": [result]}, indent=2))


if __name__ == "__main__":
    main()
