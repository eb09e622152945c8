"""strongSwan's settings syntax, as read by swanctl.conf(5) and strongswan.conf(5).

The reading mirrors charon's lexer rather than the man page's grammar alone,
so that a file both daemons read means the same to both (a pre-shared key
written with odd quoting must come out byte-identical on either side):

* ``name {`` opens a section (the brace may be on the next line), ``}`` closes
  it; ``name : a.b, c {`` also inherits settings and sub-sections of the
  referenced sections (absolute dotted names), own values first.
* ``key = value``: the value runs to the end of the line, a ``#`` or a ``}``.
  Unquoted words are joined with one space; ``"..."`` strings keep their
  spaces, may span lines and know ``\\n \\r \\t``, ``\\<newline>`` (joins lines)
  and ``\\X`` (X itself).  ``key =`` with nothing after it clears the key.
* ``#`` starts a comment anywhere outside a quoted string.
* ``include PATTERN`` reads files (shell glob, relative to the including
  file) into the section the statement is in.  ``include = x`` is a key.
* Repeated keys: the last value wins, at the position of the first.  Repeated
  sections are merged.  ``::`` in a name stands for ``:``.

Stricter than charon on purpose, each with a clear ``file:line`` error:
every file must balance its own braces, ``key = {`` is rejected (it is always
a mistyped section), a literal include that does not exist is an error (an
empty glob is only a warning), includes nest at most 10 deep without cycles,
sections nest at most 64 deep, a file is at most 4 MiB of UTF-8.
"""

from __future__ import annotations

import bisect
import glob
import os
import re
from dataclasses import dataclass, field

from quickike.control.config.errors import ConfigError, ConfigWarning

MAX_INCLUDE_DEPTH = 10
MAX_NESTING = 64
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Sections that resolving references may create before we call it a bomb.
MAX_REFERENCE_EXPANSION = 100_000
MAX_REFERENCE_DEPTH = 128

_BLANK = " \t\r"
_NAME_STOP = frozenset('#{}:,="') | frozenset(" \t\r\n")
_VALUE_STOP = frozenset('#}"') | frozenset(" \t\r\n")
_INCLUDE_STOP = frozenset("#}") | frozenset(" \t\n")
_INCLUDE_ESCAPABLE = frozenset('"#} ')
_GLOB_MAGIC = re.compile(r"[*?\[]")


@dataclass(slots=True)
class Setting:
    key: str
    #: None for ``key =`` (cleared: the default applies)
    value: str | None
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class Reference:
    name: str
    file: str
    line: int


@dataclass(slots=True)
class Section:
    name: str
    file: str
    line: int
    settings: dict[str, Setting] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    refs: list[Reference] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def get(self, key: str) -> Setting | None:
        return self.settings.get(key)

    def value(self, key: str) -> str | None:
        setting = self.settings.get(key)
        return None if setting is None else setting.value

    def section(self, name: str) -> Section | None:
        return self.sections.get(name)

    def find(self, path: str) -> Section | None:
        """The sub-section at a dotted path (``connections.gw``), if any."""
        current: Section | None = self
        for part in path.split("."):
            if current is None:
                return None
            current = current.sections.get(part)
        return current

    def to_dict(self) -> dict[str, object]:
        """Plain nested dicts (values str or None); handy in tests and debugging."""
        out: dict[str, object] = {k: s.value for k, s in self.settings.items()}
        for name, sub in self.sections.items():
            out[name] = sub.to_dict()
        return out


@dataclass(slots=True)
class ParseResult:
    root: Section
    #: every file read, main file first, as resolved absolute paths
    sources: list[str]
    warnings: list[ConfigWarning]


def parse_file(path: str | os.PathLike[str]) -> ParseResult:
    """Parse a file and everything it includes, then resolve section references."""
    ctx = _Context()
    name = os.path.normpath(os.fspath(path))
    root = Section("", name, 0)
    ctx.read_file(name, root, 0, None)
    return ctx.finish(root)


def parse_text(text: str, name: str = "<string>", base_dir: str | None = None) -> ParseResult:
    """Parse text; relative includes are looked up in ``base_dir`` (default: cwd)."""
    ctx = _Context()
    root = Section("", name, 0)
    _FileParser(text, name, base_dir or os.getcwd(), ctx).parse_into(root, 0)
    return ctx.finish(root)


class _Context:
    """State shared by one file and everything it includes."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.warnings: list[ConfigWarning] = []
        self.chain: list[str] = []

    def read_file(
        self, path: str, target: Section, nesting: int, site: tuple[str, int] | None
    ) -> None:
        site_file, site_line = site if site else (path, 0)
        real = os.path.realpath(path)
        if real in self.chain:
            cycle = " -> ".join([*self.chain[self.chain.index(real) :], real])
            raise ConfigError(f"include cycle: {cycle}", site_file, site_line)
        if len(self.chain) > MAX_INCLUDE_DEPTH:
            raise ConfigError(
                f"includes nested more than {MAX_INCLUDE_DEPTH} levels deep", site_file, site_line
            )
        try:
            with open(real, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(
                f"cannot read '{path}': {exc.strerror or exc}", site_file, site_line
            ) from None
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"file is larger than {MAX_FILE_BYTES} bytes", path, 0)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ConfigError("file is not valid UTF-8", path, line) from None
        if real not in self.sources:
            self.sources.append(real)
        self.chain.append(real)
        try:
            _FileParser(text, path, os.path.dirname(path) or ".", self).parse_into(target, nesting)
        finally:
            self.chain.pop()

    def finish(self, root: Section) -> ParseResult:
        resolved = _resolve_references(root, self.warnings)
        unique = list(dict.fromkeys(self.warnings))
        return ParseResult(resolved, self.sources, unique)


class _FileParser:
    """Reads one file's text into a section tree (iteratively, no recursion per brace)."""

    def __init__(self, text: str, file: str, base_dir: str, ctx: _Context) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.file = file
        self.base_dir = base_dir
        self.ctx = ctx
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]

    # -- helpers -----------------------------------------------------------

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def error(self, message: str, pos: int | None = None) -> ConfigError:
        return ConfigError(message, self.file, self.line_at(self.pos if pos is None else pos))

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else ""

    def skip_blank(self) -> None:
        """Skip spaces, newlines and comments (between statements)."""
        text, n = self.text, self.n
        while self.pos < n:
            c = text[self.pos]
            if c in _BLANK or c == "\n":
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                return

    def read_name(self) -> str:
        text, n = self.text, self.n
        out: list[str] = []
        while self.pos < n:
            c = text[self.pos]
            if c == ":" and self.pos + 1 < n and text[self.pos + 1] == ":":
                out.append(":")
                self.pos += 2
                continue
            if c in _NAME_STOP:
                break
            out.append(c)
            self.pos += 1
        return "".join(out)

    def read_string(self) -> str:
        """A quoted string; ``self.pos`` is at the opening quote."""
        text, n = self.text, self.n
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= n:
                raise self.error("unterminated quoted string", start)
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\r":
                self.pos += 1
                continue
            if c != "\\":
                end = self.pos + 1
                while end < n and text[end] not in '"\\\r':
                    end += 1
                out.append(text[self.pos : end])
                self.pos = end
                continue
            if self.pos + 1 >= n:
                raise self.error("unterminated quoted string", start)
            d = text[self.pos + 1]
            self.pos += 2
            if d == "n":
                out.append("\n")
            elif d == "r":
                out.append("\r")
            elif d == "t":
                out.append("\t")
            elif d == "\n":
                pass  # escaped end of line joins the lines
            elif d == "\r" and self.pos < n and text[self.pos] == "\n":
                self.pos += 1
            else:
                out.append(d)

    # -- statements --------------------------------------------------------

    def parse_into(self, target: Section, nesting: int) -> None:
        stack: list[Section] = [target]
        opened: list[int] = [0]
        while True:
            self.skip_blank()
            if self.pos >= self.n:
                if len(stack) > 1:
                    raise ConfigError(
                        f"section '{stack[-1].name}' opened here is never closed (missing '}}')",
                        self.file,
                        opened[-1],
                    )
                return
            start = self.pos
            c = self.text[start]
            if c == "}":
                if len(stack) == 1:
                    raise self.error("unexpected '}': no section is open here")
                stack.pop()
                opened.pop()
                self.pos += 1
                continue
            if c == '"':
                raise self.error("unexpected quoted string: quotes are only allowed in values")
            if c in "{=,." or (c == ":" and not self.text.startswith("::", start)):
                raise self.error(f"unexpected '{c}': expected a key or a section name")
            name = self.read_name()
            line = self.line_at(start)
            if name == "include" and self.at_include():
                depth = nesting + len(stack) - 1
                self.include(stack[-1], line, depth)
                continue
            self.skip_blank()
            c = self.peek()
            if c == "=":
                self.pos += 1
                value = self.read_value(name, line)
                stack[-1].settings[name] = Setting(name, value, self.file, line)
                continue
            refs: list[Reference] = []
            if c == ":":
                self.pos += 1
                refs = self.read_refs()
            elif c == "{":
                self.pos += 1
            else:
                found = f"'{c}'" if c else "end of file"
                raise ConfigError(
                    f"expected '=' or '{{' after '{name}', found {found}", self.file, line
                )
            if nesting + len(stack) > MAX_NESTING:
                raise ConfigError(
                    f"sections nested more than {MAX_NESTING} levels deep", self.file, line
                )
            parent = stack[-1]
            section = parent.sections.get(name)
            if section is None:
                section = Section(name, self.file, line)
                parent.sections[name] = section
            section.refs.extend(refs)
            stack.append(section)
            opened.append(line)

    def read_value(self, key: str, line: int) -> str | None:
        text, n = self.text, self.n
        parts: list[str] = []
        quoted: list[bool] = []
        while self.pos < n:
            c = text[self.pos]
            if c in _BLANK:
                self.pos += 1
            elif c in "\n#}":
                break
            elif c == '"':
                parts.append(self.read_string())
                quoted.append(True)
            else:
                end = self.pos
                while end < n and text[end] not in _VALUE_STOP:
                    end += 1
                parts.append(text[self.pos : end])
                quoted.append(False)
                self.pos = end
        if parts == ["{"] and quoted == [False]:
            raise ConfigError(
                f"'{key} = {{' assigns a brace: open a section with '{key} {{' (no '=')",
                self.file,
                line,
            )
        return " ".join(parts) if parts else None

    def read_refs(self) -> list[Reference]:
        refs: list[Reference] = []
        while True:
            self.skip_blank()
            c = self.peek()
            if not c or c in _NAME_STOP:
                found = f"'{c}'" if c else "end of file"
                raise self.error(f"expected the name of a section to inherit from, found {found}")
            line = self.line_at(self.pos)
            refs.append(Reference(self.read_name(), self.file, line))
            self.skip_blank()
            c = self.peek()
            if c == ",":
                self.pos += 1
            elif c == "{":
                self.pos += 1
                return refs
            else:
                found = f"'{c}'" if c else "end of file"
                raise self.error(f"expected ',' or '{{' after a section reference, found {found}")

    # -- includes ----------------------------------------------------------

    def at_include(self) -> bool:
        """charon's rule: ``include`` + blanks + anything but ``=``."""
        pos = self.pos
        if pos >= self.n or self.text[pos] not in " \t":
            return False
        while pos < self.n and self.text[pos] in " \t":
            pos += 1
        return pos < self.n and self.text[pos] != "="

    def read_include_pattern(self) -> str:
        text, n = self.text, self.n
        while self.pos < n and text[self.pos] in " \t":
            self.pos += 1
        if self.peek() == '"':
            return self.read_string()
        out: list[str] = []
        while self.pos < n:
            c = text[self.pos]
            if c == "\r":
                self.pos += 1
            elif c in _INCLUDE_STOP:
                break
            elif c == "\\" and self.pos + 1 < n and text[self.pos + 1] in _INCLUDE_ESCAPABLE:
                out.append(text[self.pos + 1])
                self.pos += 2
            elif c == '"':
                raise self.error("unexpected '\"' inside an include pattern")
            else:
                out.append(c)
                self.pos += 1
        return "".join(out)

    def include(self, target: Section, line: int, nesting: int) -> None:
        pattern = self.read_include_pattern()
        if not pattern:
            raise ConfigError("'include' needs a file name or a glob pattern", self.file, line)
        path = pattern if os.path.isabs(pattern) else os.path.join(self.base_dir, pattern)
        path = os.path.normpath(path)
        is_glob = bool(_GLOB_MAGIC.search(pattern))
        if is_glob:
            matches = sorted(glob.glob(path))
            if not matches:
                self.ctx.warnings.append(
                    ConfigWarning(f"include '{pattern}' matches no files", self.file, line)
                )
                return
        else:
            if not os.path.exists(path):
                raise ConfigError(f"included file '{pattern}' not found ({path})", self.file, line)
            matches = [path]
        for match in matches:
            if not os.path.isfile(match):
                if is_glob:
                    self.ctx.warnings.append(
                        ConfigWarning(
                            f"include '{pattern}': skipping '{match}' (not a regular file)",
                            self.file,
                            line,
                        )
                    )
                    continue
                raise ConfigError(f"included '{match}' is not a regular file", self.file, line)
            self.ctx.read_file(match, target, nesting, (self.file, line))


# -- references ---------------------------------------------------------------


def _resolve_references(root: Section, warnings: list[ConfigWarning]) -> Section:
    """Flatten ``name : ref1, ref2 { }`` inheritance into plain sections."""
    if not _has_refs(root):
        return root
    budget = [MAX_REFERENCE_EXPANSION]
    active: list[int] = []

    def lookup(name: str) -> Section | None:
        return root.find(name) if name else None

    def resolve(sec: Section) -> Section:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError("section references expand to too many sections", sec.file, sec.line)
        if len(active) > MAX_REFERENCE_DEPTH:
            raise ConfigError("section references are nested too deeply", sec.file, sec.line)
        active.append(id(sec))
        out = Section(sec.name, sec.file, sec.line, dict(sec.settings))
        for name, sub in sec.sections.items():
            out.sections[name] = resolve(sub)
        for ref in sec.refs:
            target = lookup(ref.name)
            if target is None:
                warnings.append(
                    ConfigWarning(f"reference to unknown section '{ref.name}'", ref.file, ref.line)
                )
                continue
            if id(target) in active:
                raise ConfigError(
                    f"section '{sec.name}' inherits from '{ref.name}', which contains or "
                    "inherits from it (reference cycle)",
                    ref.file,
                    ref.line,
                )
            _inherit(out, resolve(target))
        active.pop()
        return out

    return resolve(root)


def _has_refs(sec: Section) -> bool:
    stack = [sec]
    while stack:
        current = stack.pop()
        if current.refs:
            return True
        stack.extend(current.sections.values())
    return False


def _inherit(dst: Section, src: Section) -> None:
    """Add what ``dst`` lacks from ``src`` (own values win; inherited ones follow)."""
    for key, setting in src.settings.items():
        dst.settings.setdefault(key, setting)
    for name, sub in src.sections.items():
        mine = dst.sections.get(name)
        if mine is None:
            dst.sections[name] = sub
        else:
            _inherit(mine, sub)
