#!/bin/sh
# One-shot job (docker-compose service temporal-schema, image temporalio/admin-tools):
# creates Temporal's two PostgreSQL databases and brings their schemas up to the version
# this server release expects. Safe to run again: on a set-up database only update-schema
# runs, which is also how a Temporal upgrade gets its schema changes.
# Connection settings come from the environment temporal-sql-tool reads itself:
# SQL_PLUGIN, SQL_HOST, SQL_PORT, SQL_USER, SQL_PASSWORD.
set -eu

: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
SCHEMA_DIR="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

setup_db() {
  db="$1"
  versioned="$SCHEMA_DIR/$2/versioned"
  if temporal-sql-tool --db "$db" update-schema -d "$versioned" >/dev/null 2>&1; then
    echo "$db: schema is up to date"
    return 0
  fi
  echo "$db: no schema yet, creating it"
  temporal-sql-tool --db "$db" create || echo "$db: the database exists already"
  temporal-sql-tool --db "$db" setup-schema -v 0.0
  temporal-sql-tool --db "$db" update-schema -d "$versioned"
  echo "$db: schema created"
}

setup_db "${TEMPORAL_DB:-temporal}" temporal
setup_db "${TEMPORAL_VISIBILITY_DB:-temporal_visibility}" visibility
