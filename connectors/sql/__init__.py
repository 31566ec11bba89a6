"""SQL databases (any SQLAlchemy URL) as record sources and targets.

PostgreSQL and SQLite are first-class: bulk paths (Arrow + COPY via ADBC for PostgreSQL,
the stdlib driver's ``executemany`` for SQLite) stage a batch and apply it with two set-based
statements. Other dialects can be read from; writing to them is refused with a clear error.
Importing the package registers the connector as ``sql``.
"""

from connectors.sql import connector as connector
from connectors.sql.connector import SqlSettings
from connectors.sql.engine import make_engine
from connectors.sql.source import SqlTableSource
from connectors.sql.target import SqlTableTarget

__all__ = ["SqlSettings", "SqlTableSource", "SqlTableTarget", "make_engine"]
