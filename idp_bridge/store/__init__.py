"""Persistence speed in one place: engine and transaction scope (db), the SQLite write gate (gate), compiled
statements, COPY and pipelining (compiled), group commit (group_commit), id generation (ids), column types
(types) and every difference between the databases (sql, inbound)."""
