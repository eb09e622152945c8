"""A strongSwan-VICI-compatible control socket, so ``swanctl``, the PyPI ``vici``
package and quickike's own CLI can drive the daemon.

``protocol`` is the wire format, ``server`` the asyncio socket server, ``commands`` the
command table, ``backend`` the interface the daemon implements, ``shapes`` builders for
charon-shaped replies and events, ``client`` a small synchronous client.
"""
