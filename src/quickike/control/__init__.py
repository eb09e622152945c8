"""Control layer: configuration, control socket, CLI, metrics, logs.

Nothing here is imported by the engine; everything here may import the engine.
"""
