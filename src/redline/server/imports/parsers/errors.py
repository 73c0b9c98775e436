"""The one exception the parsers raise for a file they cannot read."""

from __future__ import annotations


class ReportParseError(ValueError):
    """A report file is malformed, unsafe or not in the expected format.

    Carries where the problem is, so the server can answer a VALIDATION_ERROR that points at
    it: `line`/`column` (1-based) for XML, `path` (e.g. `$.suites[0].specs[2]`) for JSON.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 path: str | None = None):
        self.message = message
        #: the report file's name, when it is known (set as the error leaves the file)
        self.filename: str | None = None
        self.line = line
        self.column = column
        self.path = path
        where = []
        if line is not None:
            where.append(f"line {line}" + (f", column {column}" if column is not None else ""))
        if path is not None:
            where.append(f"at {path}")
        super().__init__(f"{message} ({'; '.join(where)})" if where else message)

    def to_dict(self) -> dict:
        """The error's fields, for a VALIDATION_ERROR body."""
        return {"message": self.message, "line": self.line, "column": self.column,
                "path": self.path}
