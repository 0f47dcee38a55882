"""SQL text given to ``Manager.raw_sql``: one placeholder style everywhere, one statement.

Placeholders are ``%s`` on every backend, and with parameters ``%%`` stands for a literal
``%`` anywhere in the text, quotes included: that is what the PostgreSQL and MySQL drivers
do, and SQLite's text is translated the same way (``%s`` -> ``?``, ``%%`` -> ``%``).
A string holding more than one statement is refused unless the caller passes
``multiple_statements=True``: a value pasted into the text (``1; UPDATE ...``) must not
become a second statement. String literals, quoted identifiers and comments are skipped
when looking for placeholders and semicolons.
"""

from __future__ import annotations

import re

from ._errors import ConfigurationError
from ._query import is_write_sql

__all__ = ["prepare_raw_sql"]

# Literals, quoted identifiers and comments (skipped), then the statement separator.
# PostgreSQL's dollar-quoted bodies ($$ ... $$, $fn$ ... $fn$) may hold semicolons; MySQL's
# strings may escape a quote with a backslash.
_SKIP = {
    "postgresql": r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$""",
    "mysql": r"""'(?:[^'\\]|''|\\.)*'|"(?:[^"\\]|""|\\.)*"|`[^`]*`""",
    "sqlite": r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]""",
}
_TOKENS = {
    dialect: re.compile(rf"(?P<skip>{skip}|--[^\n]*|/\*.*?\*/)|(?P<semicolon>;)", re.S)
    for dialect, skip in _SKIP.items()
}
# MySQL: a routine or trigger body (BEGIN ... END, unquoted) is one statement however many
# semicolons it holds. (PostgreSQL quotes such bodies, so it needs no exception.)
_COMPOUND = re.compile(
    r"\s*CREATE\s+(OR\s+REPLACE\s+)?(DEFINER\s*=\s*\S+\s+)?"
    r"(PROCEDURE|FUNCTION|TRIGGER|EVENT)\b",
    re.I,
)
_PYFORMAT = re.compile(r"%[s%]")
_BLANK = re.compile(r"(\s|--[^\n]*|/\*.*?\*/)*", re.S)


def _split(sql: str, dialect: str) -> list[str]:
    """The statements of ``sql`` (empty ones, such as a trailing ``;``, left out)."""
    if dialect == "mysql" and _COMPOUND.match(sql):
        return [sql]
    statements, start = [], 0
    for match in _TOKENS.get(dialect, _TOKENS["postgresql"]).finditer(sql):
        if match.lastgroup == "semicolon":
            statements.append(sql[start : match.start()])
            start = match.end()
    statements.append(sql[start:])
    return [s for s in statements if _BLANK.fullmatch(s) is None]


def _to_qmark(sql: str) -> str:
    return _PYFORMAT.sub(lambda m: "?" if m.group(0) == "%s" else "%", sql)


def prepare_raw_sql(sql: str, dialect: str, has_params: bool, multiple_statements: bool) -> tuple[str, bool]:
    """``(sql for the dialect's driver, whether it may write)``; ConfigurationError if refused."""
    if not isinstance(sql, str):
        raise ConfigurationError(f"raw_sql() takes SQL text, got {type(sql).__name__}")
    statements = _split(sql, dialect)
    if len(statements) > 1 and not multiple_statements:
        raise ConfigurationError(
            f"raw_sql() got {len(statements)} statements; pass values as parameters (%s), or "
            "multiple_statements=True if sending several statements at once is intended"
        )
    writes = any(is_write_sql(statement) for statement in statements) if statements else False
    if dialect == "sqlite" and has_params:
        sql = _to_qmark(sql)
    return sql, writes
