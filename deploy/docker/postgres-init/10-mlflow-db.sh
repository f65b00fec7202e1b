#!/bin/sh
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d): MLflow
# gets a database of its own, so its Alembic migrations never meet the server's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE "${MLFLOW_DB_NAME:-mlflow}" OWNER "$POSTGRES_USER";
SQL
