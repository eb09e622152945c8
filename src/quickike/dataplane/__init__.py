"""Data planes: the packet machinery behind :class:`quickike.engine.dataplane.DataPlane`.

``userspace`` is ESP-in-UDP (RFC 4303, RFC 3948) over a TUN device, for kernels
without ESP; ``esp``, ``replay``, ``spd`` and ``tun`` are its parts (port-4500
framing is :mod:`quickike.wire.framing`'s), ``threads`` an optional
one-thread-per-direction runner, ``errors`` the typed reasons a packet or an SA
is refused.
"""
