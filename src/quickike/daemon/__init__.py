"""The asyncio daemon: UDP sockets, the loop's clock, signals, observers around one engine."""
