"""PostgreSQL: connections safe behind PgBouncer, migrations, item writes, executions, spill files."""
