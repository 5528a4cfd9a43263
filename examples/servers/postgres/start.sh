#!/bin/sh
# PostgreSQL from Debian's package, with its data in a volume: made on the first start
# (initdb, the password from the Compose secret, the guestbook table), then the server
# in the foreground as the postgres user.
set -eu
PGDATA=/var/lib/postgresql/data
bin=/usr/lib/postgresql/15/bin
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    cp /run/secrets/db-password /tmp/pwfile && chown postgres /tmp/pwfile
    as_postgres "$bin/initdb" -D "$PGDATA" -U postgres --pwfile=/tmp/pwfile \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "CREATE TABLE guestbook (id serial PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT now());" |
        as_postgres "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
    echo "database initialised"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
