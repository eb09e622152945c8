"""swanctl.conf-compatible configuration: syntax, meaning and the objects the engine uses.

``load_config(path)`` returns ``(QuickikeConfig, [ConfigWarning, ...])`` or
raises :class:`ConfigError`; the objects themselves live in
``quickike.engine.config`` so the engine never imports the control layer.
"""

from quickike.control.config.errors import ConfigError, ConfigWarning
from quickike.control.config.identity import parse_identity
from quickike.control.config.loader import load_config, load_config_text
from quickike.control.config.selectors import parse_address_spec, parse_traffic_selector
from quickike.control.config.syntax import ParseResult, Section, Setting, parse_file, parse_text

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "ParseResult",
    "Section",
    "Setting",
    "load_config",
    "load_config_text",
    "parse_address_spec",
    "parse_file",
    "parse_identity",
    "parse_text",
    "parse_traffic_selector",
]
