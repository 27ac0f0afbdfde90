#!/bin/sh
# Run once by the postgres image's entrypoint (/docker-entrypoint-initdb.d) on an empty
# data directory: applies init.sql to POSTGRES_DB with the role passwords from the environment.
set -eu
: "${TOKENIZE_PG_PASSWORD:?TOKENIZE_PG_PASSWORD is not set (run docker/gen-env.sh)}"
: "${READER_PG_PASSWORD:?READER_PG_PASSWORD is not set (run docker/gen-env.sh)}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v dbname="$POSTGRES_DB" \
  -v tokenize_role=tokenize -v tokenize_password="$TOKENIZE_PG_PASSWORD" \
  -v reader_role=datahub_reader -v reader_password="$READER_PG_PASSWORD" \
  -f /warehouse/init.sql
