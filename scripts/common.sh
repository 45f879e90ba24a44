# Shared set-up for scripts/dev and scripts/test: make this machine able to run the Orchestrator.
# Idempotent: a second run reuses the virtualenv, the services and the database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
cd "$ROOT"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    log "Installing Debian packages: $*"
    if [ -z "${APT_UPDATED:-}" ]; then as_root apt-get update -qq >/dev/null; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_python() {
    command -v python3 >/dev/null || apt_install python3 python3-venv python3-dev
    if [ ! -x "$PY" ]; then
        log "Creating the virtualenv in .venv"
        python3 -m venv "$VENV" || { apt_install python3-venv; python3 -m venv "$VENV"; }
    fi
    local stamp="$VENV/.installed-$(sha256sum setup.cfg | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        # setup.cfg is the one list of dependencies; the code runs from the checkout (python -m …).
        log "Installing the dependencies listed in setup.cfg (with the test extras)"
        "$PY" -m pip install -q --upgrade pip >/dev/null
        "$PY" - <<'PY' > "$VENV/requirements.txt"
import configparser
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
for section, key in (("options", "install_requires"), ("options.extras_require", "test")):
    for line in cfg.get(section, key).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            print(line)
PY
        "$PY" -m pip install -q -r "$VENV/requirements.txt"
        rm -f "$VENV"/.installed-* && touch "$stamp"
    fi
    # the project itself, editable, so the `offerhub` console script exists (setup.cfg entry_points)
    if [ ! -x "$VENV/bin/offerhub" ] || [ ! -f "$VENV/.editable-$(sha256sum setup.cfg | cut -c1-16)" ]; then
        log "Installing the project (editable) for the offerhub command"
        if ! "$PY" -m pip install -q --no-deps -e . > "$VENV/editable.log" 2>&1 || [ ! -x "$VENV/bin/offerhub" ]; then
            cat "$VENV/editable.log" >&2; echo "pip install -e . failed" >&2; return 1
        fi
        rm -f "$VENV"/.editable-* && touch "$VENV/.editable-$(sha256sum setup.cfg | cut -c1-16)"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
    echo "Port $1 did not open" >&2; return 1
}

ensure_postgres() {
    port_open 5432 && return 0
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    log "Starting PostgreSQL"
    local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port 5432
    # trust local TCP connections for the postgres role, as the development machines do
    if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        as_root sed -i 's/^\(host.*127.0.0.1\/32\s*\)\S*$/\1trust/; s/^\(host.*::1\/128\s*\)\S*$/\1trust/' "$hba"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
}

ensure_redis() {
    port_open 6379 && return 0
    command -v redis-server >/dev/null || apt_install redis-server
    log "Starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/offerhub.log
    wait_port 6379
}

ensure_rabbitmq() {
    port_open 5672 && return 0
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    log "Starting RabbitMQ"
    as_root rabbitmq-server -detached || true
    wait_port 5672
}

# ensure_pg_connections N: PostgreSQL's max_connections at least N (a restart when it was lower). Parallel
# test workers each run the product's processes, whose pools outgrow the default 100 ("too many clients").
ensure_pg_connections() {
    local have; have="$(psql -h 127.0.0.1 -U postgres -tAc 'show max_connections')"
    [ "$have" -ge "$1" ] && return 0
    log "Raising PostgreSQL's max_connections from $have to $1 (restarts it)"
    psql -h 127.0.0.1 -U postgres -qc "alter system set max_connections = $1"
    local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart
    wait_port 5432
}

# Debian's chromium, for the docs site's browser test (Playwright drives it; it never downloads a browser)
ensure_browser() {
    command -v chromium >/dev/null || apt_install chromium
}

ensure_services() {
    command -v psql >/dev/null || apt_install postgresql-client
    ensure_postgres
    ensure_redis
    ensure_rabbitmq
}

# recreate_database NAME: drop it (closing its connections) and create it empty
recreate_database() {
    log "Creating database $1 afresh"
    psql -h 127.0.0.1 -U postgres -qc "drop database if exists \"$1\" with (force)"
    psql -h 127.0.0.1 -U postgres -qc "create database \"$1\""
}

# database_exists NAME: whether PostgreSQL on 127.0.0.1 has it
database_exists() {
    psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='$1'" | grep -q 1
}

# create_database NAME: create it when absent (PostgreSQL on 127.0.0.1, role postgres)
create_database() {
    if ! database_exists "$1"; then
        log "Creating database $1"
        psql -h 127.0.0.1 -U postgres -qc "create database \"$1\""
    fi
}
