"""quickike: an IKEv2 VPN gateway with Quick Crash Detection (RFC 6290)."""

__version__ = "0.1.0"
