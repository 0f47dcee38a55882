#!/usr/bin/env bash
# Real replicated database topologies on 127.0.0.1 for the test-suite.
#
#   PostgreSQL 15: pg-primary :55432, streaming standbys pg-replica-1 :55433, pg-replica-2 :55434
#   PgBouncer:     pgbouncer :56432 (transaction pooling) in front of pg-primary
#   MariaDB:       my-primary :53306, GTID replica my-replica :53307 (read_only)
#
# Usage: scripts/cluster.sh VERB [ARGS]
#   install                       apt-get install mariadb-server/pgbouncer if missing
#   start [pg|mysql|all]          init (first time) or start stopped nodes; wait until healthy
#   stop [pg|mysql|all]           stop what this script started
#   destroy                       stop everything and delete the state dir
#   status                        one line per node
#   env                           print (and write $STATE/env) the export lines: AIOPD_* per
#                                 node, and DATABASE_URL / DATABASE_REPLICA_URLS (the PostgreSQL
#                                 primary and standbys) for Manager.from_env() and the CLI
#   delay NODE SECS               replica replay delay (0 removes it)
#   pause NODE | resume NODE      pause/resume replay on a replica
#   down NODE | up NODE           crash a node / start it again
#   promote NODE                  turn a replica into a primary (changes the topology)
#   reset [pg|mysql|all]          back to the original healthy topology
#   wait-sync [pg|mysql|all]      wait until the replicas replayed the primary's position
#
# NODE: pg-primary pg-replica-1 pg-replica-2 my-primary my-replica pgbouncer
#
# All state (data, sockets, logs, pid files) lives in ${AIOPD_CLUSTER_DIR:-<repo>/.cluster}.
# AIOPD_PORT_OFFSET=N adds N to every port above (default 0).
# Progress goes to stderr; only `env`/`start` print export lines and `status` its table on stdout.
# -E: the ERR trap below also fires for failures inside functions.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${AIOPD_CLUSTER_DIR:-$ROOT/.cluster}"
PGBIN=/usr/lib/postgresql/15/bin
# Debian puts the server binaries in sbin, which a CI user's PATH may lack.
export PATH="$PGBIN:/usr/sbin:/sbin:$PATH"
# Client tools must never pick up a developer's ~/.psqlrc, ~/.my.cnf, PGHOST, ... .
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS MYSQL_HOST MYSQL_PWD

APP_USER=aiopd
APP_PASS='p@ss:w/rd 1'
APP_PASS_URL='p%40ss%3Aw%2Frd%201'
PG_DBS=(aiopd shard1 shard2 shard3 chaos)
MY_DBS=(aiopd shard1 shard2 shard3 chaos)
PG_REPLICAS=(pg-replica-1 pg-replica-2)
declare -A PORT=(
  [pg-primary]=55432 [pg-replica-1]=55433 [pg-replica-2]=55434
  [my-primary]=53306 [my-replica]=53307 [pgbouncer]=56432
)
# AIOPD_PORT_OFFSET moves every port, so a second topology (another checkout, with its own
# AIOPD_CLUSTER_DIR) can run beside this one: tests/cluster.py and benchmarks/ read it too.
PORT_OFFSET="${AIOPD_PORT_OFFSET:-0}"
[[ "$PORT_OFFSET" =~ ^[0-9]+$ ]] || { echo "cluster: AIOPD_PORT_OFFSET must be a number, got '$PORT_OFFSET'" >&2; exit 2; }
for _node in "${!PORT[@]}"; do PORT[$_node]=$((PORT[$_node] + PORT_OFFSET)); done
unset _node
WAIT_SECS=60 # bound for "until it accepts connections / streams" waits
SYNC_SECS=30 # bound for wait-sync

# ---------------------------------------------------------------- helpers

log() { echo "cluster: $*" >&2; }

# die MSG [LOGFILE...]: the tail of each server log usually says why a node did not come up.
die() {
  local msg=$1
  shift
  echo "cluster: ERROR: $msg" >&2
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      echo "----- tail of $f -----" >&2
      tail -n 30 "$f" >&2
    fi
  done
  exit 1
}

# set -e exits silently; say where it happened.
# shellcheck disable=SC2154 # rc is assigned inside the trap string
trap 'rc=$?; echo "cluster: ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds or SECS pass.
wait_for() {
  local secs=$1
  shift
  local deadline
  deadline=$(awk -v t="$(now)" -v s="$secs" 'BEGIN { printf "%.3f", t + s }')
  while true; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if awk -v d="$deadline" -v t="$(now)" 'BEGIN { exit !(t > d) }'; then return 1; fi
    sleep 0.1
  done
}

# PostgreSQL and PgBouncer refuse to run as root; setpriv needs neither PAM nor a tty.
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

# A zombie still answers `kill -0`, and PID 1 here reaps slowly: a process counts as gone when
# /proc/PID is gone or in state Z (a zombie holds no sockets or files any more).
proc_alive() {
  local pid=$1 stat
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # comm may contain spaces and parens; the state follows the last ") "
  [[ ${stat:0:1} != Z ]]
}

# pid_from FILE COMM: the pid in a pid file, only if that pid still runs COMM (pids get reused).
pid_from() {
  local file=$1 comm=$2 pid
  [[ -r $file ]] || return 1
  pid=$(head -n1 "$file" | tr -dc 0-9)
  proc_alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
  echo "$pid"
}

# kill_wait PID SIGNAL SECS
kill_wait() {
  local pid=$1 sig=$2 secs=$3
  kill "-$sig" "$pid" 2>/dev/null || true
  wait_for "$secs" proc_gone "$pid"
}
proc_gone() { ! proc_alive "$1"; }

# run_parallel "FUNC ARGS" ...: run each (word-split) command in a background subshell and fail if
# any of them failed; each one already printed its own error.
run_parallel() {
  local pids=() cmd pid rc=0
  for cmd in "$@"; do
    # shellcheck disable=SC2086 # word splitting of "FUNC ARGS" is the point
    ( $cmd ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  ((rc == 0)) || exit 1
}

node_kind() {
  case $1 in
    pg-primary | pg-replica-1 | pg-replica-2) echo pg ;;
    my-primary | my-replica) echo my ;;
    pgbouncer) echo bouncer ;;
    *) die "unknown node '$1' (pg-primary pg-replica-1 pg-replica-2 my-primary my-replica pgbouncer)" ;;
  esac
}

app_url() {
  local scheme=$1 port=$2
  echo "$scheme://$APP_USER:$APP_PASS_URL@127.0.0.1:$port/aiopd"
}

# Mutating verbs take a lock: several test sessions may call start/reset at the same time.
# Every daemon is started with 9>&- so that it does not hold the lock for the rest of its life.
take_lock() {
  local lock
  lock="${TMPDIR:-/tmp}/aiopd-cluster.$(printf %s "$STATE" | md5sum | cut -c1-12).lock"
  exec 9>"$lock"
  flock -w 300 9 || die "could not get the cluster lock $lock within 300 s"
}

ensure_state_dir() {
  mkdir -p "$STATE"
  # postgres and mysql must be able to reach their subdirectories.
  chmod 755 "$STATE"
  local d=$STATE
  while [[ $d != / ]]; do
    d=$(dirname "$d")
    if ! setpriv --reuid=postgres --regid=postgres --init-groups -- test -x "$d"; then
      die "user postgres cannot enter $d; set AIOPD_CLUSTER_DIR to a world-traversable path"
    fi
  done
}

# ---------------------------------------------------------------- install

verb_install() {
  local pkgs=()
  # Also here: `make test` installs before the HA topologies start opening sockets beside us.
  reserve_ports
  [[ -x /usr/sbin/mariadbd ]] || pkgs+=(mariadb-server)
  [[ -x /usr/sbin/pgbouncer ]] || pkgs+=(pgbouncer)
  [[ -x $PGBIN/postgres ]] || pkgs+=(postgresql-15)
  command -v setpriv >/dev/null || pkgs+=(util-linux)
  if ((${#pkgs[@]} == 0)); then
    log "install: everything present"
    return 0
  fi
  log "install: apt-get install ${pkgs[*]}"
  apt-get update -qq </dev/null >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" </dev/null >&2
}

# ---------------------------------------------------------------- PostgreSQL

pg_dir() { echo "$STATE/$1"; }
pg_data() { echo "$STATE/$1/data"; }
pg_logf() { echo "$STATE/$1/postgres.log"; }

# psql_su NODE SQL...: superuser over TCP (pg_hba trusts postgres from 127.0.0.1); each SQL is its
# own -c so that ALTER SYSTEM does not end up inside an implicit transaction.
psql_su() {
  local node=$1
  shift
  local args=() s
  for s in "$@"; do args+=(-c "$s"); done
  psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$node]}" -U postgres -d postgres "${args[@]}"
}

psql_app() {
  local port=$1
  shift
  PGPASSWORD=$APP_PASS PGCONNECT_TIMEOUT=3 \
    psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$APP_USER" -d aiopd -c "$@"
}

pg_running() {
  local node=$1
  [[ -f $(pg_data "$node")/PG_VERSION ]] || return 1
  as_pg pg_ctl status -D "$(pg_data "$node")" >/dev/null 2>&1
}

pg_is_replica_conf() { [[ -f $(pg_data "$1")/standby.signal ]]; }

pg_write_node_conf() {
  local node=$1
  cat >"$(pg_data "$node")/node.conf" <<EOF
# Per-node settings; the shared ones are in postgresql.conf (copied to standbys by pg_basebackup).
port = ${PORT[$node]}
unix_socket_directories = '$(pg_dir "$node")'
cluster_name = '$node'
EOF
  chown postgres:postgres "$(pg_data "$node")/node.conf"
}

pg_start_node() {
  local node=$1
  pg_running "$node" && return 0
  local t0
  t0=$(now)
  as_pg pg_ctl start -w -t "$WAIT_SECS" -D "$(pg_data "$node")" -l "$(pg_logf "$node")" >/dev/null 2>&1 9>&- ||
    die "$node did not start" "$(pg_logf "$node")"
  log "$node up on :${PORT[$node]} ($(elapsed "$t0") s)"
}

pg_stop_node() {
  local node=$1 mode=${2:-fast}
  pg_running "$node" || return 0
  as_pg pg_ctl stop -w -t "$WAIT_SECS" -m "$mode" -D "$(pg_data "$node")" >/dev/null 2>&1 ||
    die "$node did not stop" "$(pg_logf "$node")"
  log "$node stopped ($mode)"
}

pg_init_primary() {
  local node=pg-primary dir data
  dir=$(pg_dir $node)
  data=$(pg_data $node)
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  as_pg initdb -D "$data" -U postgres -A trust --no-sync --encoding=UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || die "initdb failed" "$dir/initdb.log"
  cat >>"$data/postgresql.conf" <<'EOF'

# ---- aiopeewee_dist test topology (scripts/cluster.sh) ----
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 32MB
# Test data is disposable; synchronous_commit stays ON: with it off WAL is streamed only after
# the WAL writer flushes, which adds up to 200 ms of replication lag.
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
# pg_basebackup -C -S reserves WAL only once its slot exists; right after the databases are
# created a checkpoint could recycle a segment the backup still needs ("requested WAL segment
# ... has already been removed"). Keeping recent WAL closes that window.
wal_keep_size = 256MB
wal_log_hints = on
hot_standby = on
hot_standby_feedback = on
# A standby whose primary was down retries every 5 s by default: too slow for `up pg-primary`.
wal_retrieve_retry_interval = 200ms
password_encryption = scram-sha-256
log_line_prefix = '%m [%p] %q%u@%d '
include_if_exists = 'node.conf'
EOF
  cat >"$data/pg_hba.conf" <<'EOF'
# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          all                      trust
host    replication  all       127.0.0.1/32   trust
host    all          postgres  127.0.0.1/32   trust
# The application user's password is really checked.
host    all          all       127.0.0.1/32   scram-sha-256
EOF
  pg_write_node_conf $node
  pg_start_node $node
  local sql=("CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASS'" "GRANT pg_monitor TO $APP_USER") db
  for db in "${PG_DBS[@]}"; do sql+=("CREATE DATABASE $db OWNER $APP_USER"); done
  psql_su $node "${sql[@]}" >/dev/null || die "creating the application user/databases failed" "$(pg_logf $node)"
}

pg_init_replica() {
  local node=$1 slot dir
  slot=${node//-/_} # pg-replica-1 -> slot pg_replica_1
  dir=$(pg_dir "$node")
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  as_pg pg_basebackup -h 127.0.0.1 -p "${PORT[pg-primary]}" -U postgres -D "$(pg_data "$node")" \
    -R -X stream -C -S "$slot" --checkpoint=fast --no-sync >"$dir/basebackup.log" 2>&1 ||
    die "pg_basebackup for $node failed" "$dir/basebackup.log" "$(pg_logf pg-primary)"
  pg_write_node_conf "$node"
  pg_start_node "$node"
}

pg_streaming_count() {
  psql_su pg-primary "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null
}
pg_all_streaming() { [[ $(pg_streaming_count) == "${#PG_REPLICAS[@]}" ]]; }
pg_receiver_streaming() {
  [[ $(psql_su "$1" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null) == streaming ]]
}

pg_wait_app_login() {
  local node=$1
  wait_for "$WAIT_SECS" psql_app "${PORT[$node]}" "SELECT 1" ||
    die "$node does not accept connections as $APP_USER" "$(pg_logf "$node")"
}

pg_wait_replica_streaming() {
  local node=$1
  wait_for "$WAIT_SECS" pg_receiver_streaming "$node" ||
    die "$node is not streaming from pg-primary" "$(pg_logf "$node")" "$(pg_logf pg-primary)"
}

pg_wait_healthy() {
  local node
  for node in pg-primary "${PG_REPLICAS[@]}"; do pg_wait_app_login "$node"; done
  wait_for "$WAIT_SECS" pg_all_streaming ||
    die "pg_stat_replication shows $(pg_streaming_count) streaming standbys, want ${#PG_REPLICAS[@]}" \
      "$(pg_logf pg-primary)" "$(pg_logf pg-replica-1)" "$(pg_logf pg-replica-2)"
  bouncer_wait_login
}

pg_initialized() { [[ -f $STATE/pg.initialized ]]; }

pg_start() {
  ensure_state_dir
  if ! pg_initialized; then
    # Data without the marker means an init that died half-way: start over.
    pg_destroy
    local t0
    t0=$(now)
    pg_init_primary
    # The base backups are mostly kernel time spent writing files: two at once save about a second.
    run_parallel "pg_init_replica pg-replica-1" "pg_init_replica pg-replica-2"
    bouncer_init
    touch "$STATE/pg.initialized"
    log "PostgreSQL topology initialised ($(elapsed "$t0") s)"
  fi
  local node
  for node in pg-primary "${PG_REPLICAS[@]}"; do pg_start_node "$node"; done
  bouncer_start
  pg_wait_healthy
}

pg_stop() {
  bouncer_stop TERM
  # Standbys first: a primary waits for its walsenders to finish on a fast shutdown.
  local node
  for node in "${PG_REPLICAS[@]}" pg-primary; do pg_stop_node "$node" fast; done
}

pg_destroy() {
  bouncer_stop KILL
  local node
  for node in "${PG_REPLICAS[@]}" pg-primary; do pg_stop_node "$node" immediate; done
  rm -rf "$STATE/pg-primary" "$STATE/pg-replica-1" "$STATE/pg-replica-2" "$STATE/pgbouncer" \
    "$STATE/pg.initialized"
}

# ---------------------------------------------------------------- PgBouncer

bouncer_dir() { echo "$STATE/pgbouncer"; }

bouncer_init() {
  local dir
  dir=$(bouncer_dir)
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
aiopd = host=127.0.0.1 port=${PORT[pg-primary]} dbname=aiopd
* = host=127.0.0.1 port=${PORT[pg-primary]}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${PORT[pgbouncer]}
unix_socket_dir = $dir
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
; The userlist holds the plain password, so PgBouncer can do SCRAM towards clients AND the server.
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
; The app user may read the console (SHOW POOLS, SHOW CLIENTS) in tests.
admin_users = aiopd
stats_users = aiopd
ignore_startup_parameters = extra_float_digits
; After pg-primary was down, retry the server login after 1 s instead of the default 15 s.
server_login_retry = 1
server_connect_timeout = 5
EOF
  printf '"%s" "%s"\n' "$APP_USER" "$APP_PASS" >"$dir/userlist.txt"
  # A root-owned log file left by an earlier root attempt makes PgBouncer exit silently.
  touch "$dir/pgbouncer.log"
  chown -R postgres:postgres "$dir"
  chmod 600 "$dir/userlist.txt"
}

bouncer_pid() { pid_from "$(bouncer_dir)/pgbouncer.pid" pgbouncer; }
bouncer_running() { bouncer_pid >/dev/null; }

bouncer_start() {
  bouncer_running && return 0
  local dir
  dir=$(bouncer_dir)
  [[ -f $dir/pgbouncer.ini ]] || die "no $dir/pgbouncer.ini: run destroy + start"
  # Refuses to start over a pid file whose pid answers kill -0, which a zombie does.
  rm -f "$dir/pgbouncer.pid"
  as_pg pgbouncer -d -q "$dir/pgbouncer.ini" </dev/null >>"$dir/pgbouncer.out" 2>&1 9>&- ||
    die "pgbouncer did not start" "$dir/pgbouncer.out" "$dir/pgbouncer.log"
  wait_for 10 bouncer_running || die "pgbouncer did not start" "$dir/pgbouncer.out" "$dir/pgbouncer.log"
  log "pgbouncer up on :${PORT[pgbouncer]}"
}

bouncer_wait_login() {
  wait_for "$WAIT_SECS" psql_app "${PORT[pgbouncer]}" "SELECT 1" ||
    die "pgbouncer does not accept $APP_USER" "$(bouncer_dir)/pgbouncer.log" "$(pg_logf pg-primary)"
}

# bouncer_stop SIGNAL: TERM for a clean stop, KILL for `down`.
bouncer_stop() {
  local sig=${1:-TERM} pid
  pid=$(bouncer_pid) || return 0
  kill_wait "$pid" "$sig" 30 || die "pgbouncer (pid $pid) did not stop" "$(bouncer_dir)/pgbouncer.log"
  rm -f "$(bouncer_dir)/pgbouncer.pid"
  log "pgbouncer stopped ($sig)"
}

# ---------------------------------------------------------------- MariaDB

my_dir() { echo "$STATE/$1"; }
my_logf() { echo "$STATE/$1/mariadb.log"; }

# my_root NODE SQL: root over TCP with no password (install-db --auth-root-authentication-method=normal).
# --no-defaults: otherwise /etc/mysql sends the client to /run/mysqld.
my_root() {
  local node=$1
  shift
  mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P "${PORT[$node]}" -uroot \
    --connect-timeout=3 -N -B -e "$*"
}

my_app() {
  local node=$1
  shift
  mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P "${PORT[$node]}" -u"$APP_USER" \
    --password="$APP_PASS" --connect-timeout=3 -N -B -D aiopd -e "$*"
}

my_ping() {
  mariadb-admin --no-defaults --protocol=tcp -h127.0.0.1 -P "${PORT[$1]}" -uroot \
    --connect-timeout=2 ping
}

my_pid() { pid_from "$(my_dir "$1")/mariadbd.pid" mariadbd; }
my_running() { my_pid "$1" >/dev/null; }

# my_slave_field NODE FIELD: one field of SHOW SLAVE STATUS (empty if not a replica).
my_slave_field() {
  # Not my_root: -N would drop the field names from the vertical output.
  mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P "${PORT[$1]}" -uroot --connect-timeout=3 \
    -e 'SHOW SLAVE STATUS\G' | awk -v f="$2" '{ sub(/^ +/, "") } index($0, f ": ") == 1 { print substr($0, length(f) + 3) }'
}

# my_slave_broken NODE: prints the error of a replication thread that stopped on one (a fatal IO
# error or an SQL error, e.g. a diverged replica); fails if there is none.
my_slave_broken() {
  local status
  status=$(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P "${PORT[$1]}" -uroot --connect-timeout=3 \
    -e 'SHOW SLAVE STATUS\G') || return 1
  awk '{ sub(/^ +/, "") }
    /^Slave_IO_Running: No$/ { io = 1 } /^Slave_SQL_Running: No$/ { sql = 1 }
    /^Last_IO_Error: ./ { ioerr = substr($0, 16) } /^Last_SQL_Error: ./ { sqlerr = substr($0, 17) }
    END { if (sql && sqlerr != "") { print sqlerr; exit 0 }
          if (io && ioerr != "") { print ioerr; exit 0 }
          exit 1 }' <<<"$status"
}

my_slave_running() {
  [[ $(my_slave_field "$1" Slave_IO_Running) == Yes && $(my_slave_field "$1" Slave_SQL_Running) == Yes ]]
}

my_write_cnf() {
  local node=$1 server_id=$2 read_only=$3 dir
  dir=$(my_dir "$node")
  cat >"$dir/my.cnf" <<EOF
[mysqld]
user = mysql
datadir = $dir/data
socket = $dir/mariadb.sock
pid-file = $dir/mariadbd.pid
log-error = $dir/mariadb.log
# Own temp dir: install-db's temporary tables once vanished from a shared /tmp mid-bootstrap.
tmpdir = $dir/tmp
port = ${PORT[$node]}
bind-address = 127.0.0.1
skip-name-resolve
server-id = $server_id
log-bin = binlog
relay-log = relay-bin
binlog-format = ROW
log-slave-updates
gtid-strict-mode = 1
read-only = $read_only
max-connections = 300
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
# Disposable test data: trade durability for speed and memory.
innodb-buffer-pool-size = 64M
innodb-log-file-size = 32M
innodb-flush-log-at-trx-commit = 2
sync-binlog = 0
performance-schema = OFF
# Keeps the open-files request under common ulimits (else a warning on every start).
table-open-cache = 1000
EOF
}

my_init_node() {
  local node=$1 server_id=$2 read_only=$3 dir
  dir=$(my_dir "$node")
  mkdir -p "$dir/data" "$dir/tmp"
  my_write_cnf "$node" "$server_id" "$read_only"
  chown -R mysql:mysql "$dir"
  # normal: root@localhost/127.0.0.1 without password, so root can log in over TCP.
  local try
  for try in 1 2; do
    if mariadb-install-db --defaults-file="$dir/my.cnf" --user=mysql --auth-root-authentication-method=normal \
      --skip-test-db </dev/null >"$dir/install.log" 2>&1; then
      return 0
    fi
    log "mariadb-install-db for $node failed (try $try)"
    rm -rf "$dir/data" && mkdir -p "$dir/data" && chown mysql:mysql "$dir/data"
  done
  die "mariadb-install-db for $node failed" "$dir/install.log" "$(my_logf "$node")"
}

my_start_node() {
  local node=$1 dir t0
  my_running "$node" && return 0
  dir=$(my_dir "$node")
  [[ -f $dir/my.cnf ]] || die "no $dir/my.cnf: run destroy + start"
  t0=$(now)
  # Not mysqld_safe: it would restart a node that `down` killed on purpose. setsid keeps it out of
  # the caller's process group (a Ctrl-C in the test run must not kill the servers).
  setsid mariadbd --defaults-file="$dir/my.cnf" </dev/null >>"$dir/mariadbd.out" 2>&1 9>&- &
  local pid=$!
  while ! my_ping "$node" >/dev/null 2>&1; do
    proc_alive "$pid" || die "$node exited during start" "$(my_logf "$node")" "$dir/mariadbd.out"
    awk -v a="$t0" -v b="$(now)" -v w="$WAIT_SECS" 'BEGIN { exit !(b - a > w) }' &&
      die "$node did not start within $WAIT_SECS s" "$(my_logf "$node")"
    sleep 0.1
  done
  wait_for 10 my_running "$node" || die "$node wrote no pid file" "$(my_logf "$node")"
  log "$node up on :${PORT[$node]} ($(elapsed "$t0") s)"
}

# my_stop_node NODE TERM|KILL
my_stop_node() {
  local node=$1 sig=${2:-TERM} pid
  pid=$(my_pid "$node") || return 0
  kill_wait "$pid" "$sig" "$WAIT_SECS" || die "$node (pid $pid) did not stop" "$(my_logf "$node")"
  log "$node stopped ($sig)"
}

my_bootstrap_primary() {
  local u stmts="" db
  stmts+="CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';"
  stmts+="GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
  for u in "'$APP_USER'@'127.0.0.1'" "'$APP_USER'@'localhost'"; do
    stmts+="CREATE USER $u IDENTIFIED BY '$APP_PASS';"
    stmts+="GRANT ALL PRIVILEGES ON *.* TO $u;"
    # ALL includes READ_ONLY ADMIN, which would let the app user write to the read_only
    # replica and silently diverge it.
    stmts+="REVOKE READ_ONLY ADMIN ON *.* FROM $u;"
    # Part of ALL already; spelled out because the tests rely on reading replication status.
    stmts+="GRANT REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR ON *.* TO $u;"
  done
  for db in "${MY_DBS[@]}"; do stmts+="CREATE DATABASE $db;"; done
  my_root my-primary "$stmts" || die "bootstrapping my-primary failed" "$(my_logf my-primary)"
}

my_bootstrap_replica() {
  # gtid_slave_pos is empty on a fresh node, so the replica replays the primary's binlog from its
  # first event: the users and databases created above arrive by replication.
  my_root my-replica "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${PORT[my-primary]},
      MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
    START SLAVE;" || die "setting up replication on my-replica failed" "$(my_logf my-replica)"
}

my_wait_healthy() {
  local node
  wait_for "$WAIT_SECS" my_slave_running my-replica ||
    die "my-replica is not replicating (IO=$(my_slave_field my-replica Slave_IO_Running)," \
      "SQL=$(my_slave_field my-replica Slave_SQL_Running)): $(my_slave_field my-replica Last_Error)" \
      "$(my_logf my-replica)" "$(my_logf my-primary)"
  for node in my-primary my-replica; do
    wait_for "$WAIT_SECS" my_app "$node" "SELECT 1" ||
      die "$node does not accept connections as $APP_USER" "$(my_logf "$node")"
  done
}

my_initialized() { [[ -f $STATE/mysql.initialized ]]; }

my_start() {
  ensure_state_dir
  if ! my_initialized; then
    my_destroy
    local t0
    t0=$(now)
    run_parallel "my_init_node my-primary 1 0" "my_init_node my-replica 2 1"
    my_start_node my-primary
    my_bootstrap_primary
    my_start_node my-replica
    my_bootstrap_replica
    touch "$STATE/mysql.initialized"
    log "MariaDB topology initialised ($(elapsed "$t0") s)"
  fi
  my_start_node my-primary
  my_start_node my-replica
  my_wait_healthy
}

my_stop() {
  my_stop_node my-replica TERM
  my_stop_node my-primary TERM
}

my_destroy() {
  my_stop_node my-replica KILL
  my_stop_node my-primary KILL
  rm -rf "$STATE/my-primary" "$STATE/my-replica" "$STATE/mysql.initialized"
}

# ---------------------------------------------------------------- verbs

# parse_part [pg|mysql|all]: sets PART (a global: a die inside $(...) would only end the subshell).
parse_part() {
  PART=${1:-all}
  case $PART in
    pg | mysql | all) ;;
    *) die "expected pg, mysql or all, got '$PART'" ;;
  esac
}

# The ports sit inside the kernel's ephemeral range (32768-60999): a client socket opened
# elsewhere (Patroni and etcd start beside this in `make test`) can take one as its source port
# just before a server binds it ("Address already in use"). Reserving them keeps them for us.
reserve_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports current ports
  [[ -w $file ]] || return 0
  current=$(<"$file")
  ports=$(IFS=,; echo "${PORT[*]}")
  echo "${current:+$current,}$ports" >"$file" 2>/dev/null || log "could not reserve ports $ports (continuing)"
}

verb_start() {
  local t0
  parse_part "${1:-}"
  t0=$(now)
  reserve_ports
  # Install before going parallel: two apt-get runs would fight over the dpkg lock.
  if [[ ! -x /usr/sbin/pgbouncer || ! -x $PGBIN/postgres || ! -x /usr/sbin/mariadbd ]]; then verb_install; fi
  case $PART in
    pg) pg_start ;;
    mysql) my_start ;;
    # The two parts are independent and mostly wait on I/O: bring them up side by side.
    all) run_parallel pg_start my_start ;;
  esac
  log "start $PART: healthy ($(elapsed "$t0") s)"
  verb_env
}

verb_stop() {
  parse_part "${1:-}"
  [[ $PART == mysql ]] || pg_stop
  [[ $PART == pg ]] || my_stop
}

verb_destroy() {
  pg_destroy
  my_destroy
  rm -rf "$STATE"
  log "destroyed $STATE"
}

verb_env() {
  local lines
  lines=$(
    cat <<EOF
export AIOPD_PG_PRIMARY=$(app_url postgresql "${PORT[pg-primary]}")
export AIOPD_PG_REPLICA_1=$(app_url postgresql "${PORT[pg-replica-1]}")
export AIOPD_PG_REPLICA_2=$(app_url postgresql "${PORT[pg-replica-2]}")
export AIOPD_MY_PRIMARY=$(app_url mysql "${PORT[my-primary]}")
export AIOPD_MY_REPLICA=$(app_url mysql "${PORT[my-replica]}")
export AIOPD_PGBOUNCER=$(app_url postgresql "${PORT[pgbouncer]}")
export DATABASE_URL=$(app_url postgresql "${PORT[pg-primary]}")
export DATABASE_REPLICA_URLS=$(app_url postgresql "${PORT[pg-replica-1]}"),$(app_url postgresql "${PORT[pg-replica-2]}")
EOF
  )
  echo "$lines"
  mkdir -p "$STATE"
  echo "$lines" >"$STATE/env"
}

status_line() { printf '%-13s %-6s %-5s %-8s %s\n' "$@"; }

verb_status() {
  status_line NODE PORT STATE ROLE DETAIL
  local node primary_lsn=""
  if pg_running pg-primary; then
    primary_lsn=$(psql_su pg-primary "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END" 2>/dev/null || true)
  fi
  for node in pg-primary "${PG_REPLICAS[@]}"; do
    if ! pg_running "$node"; then
      status_line "$node" "${PORT[$node]}" down - -
      continue
    fi
    local row
    row=$(psql_su "$node" "SELECT pg_is_in_recovery(),
        CASE WHEN pg_is_in_recovery() THEN
          CASE WHEN '$primary_lsn' = '' THEN '?'
            ELSE greatest(0, pg_wal_lsn_diff(nullif('$primary_lsn', '')::pg_lsn, pg_last_wal_replay_lsn()))::text || 'B' END
          || ' replay=' || replace(pg_get_wal_replay_pause_state(), 'not paused', 'running')
          || ' delay=' || current_setting('recovery_min_apply_delay')
          || ' receiver=' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')
        ELSE 'streaming=' || (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming') END" \
      2>/dev/null | tr '|' ' ') || row="? unreachable"
    local in_rec=${row%% *} detail=${row#* }
    case $in_rec in
      t) status_line "$node" "${PORT[$node]}" up replica "lag=$detail" ;;
      f) status_line "$node" "${PORT[$node]}" up primary "$detail" ;;
      *) status_line "$node" "${PORT[$node]}" up '?' "$detail" ;;
    esac
  done
  if bouncer_running; then
    status_line pgbouncer "${PORT[pgbouncer]}" up pooler "-> pg-primary :${PORT[pg-primary]}"
  else
    status_line pgbouncer "${PORT[pgbouncer]}" down pooler -
  fi
  for node in my-primary my-replica; do
    if ! my_running "$node"; then
      status_line "$node" "${PORT[$node]}" down - -
      continue
    fi
    local io
    io=$(my_slave_field "$node" Slave_IO_Running 2>/dev/null || true)
    if [[ -n $io ]]; then
      status_line "$node" "${PORT[$node]}" up replica \
        "lag=$(my_slave_field "$node" Seconds_Behind_Master)s io=$io sql=$(my_slave_field "$node" Slave_SQL_Running) delay=$(my_slave_field "$node" SQL_Delay)s gtid=$(my_root "$node" 'SELECT @@gtid_slave_pos')"
    else
      status_line "$node" "${PORT[$node]}" up primary "gtid=$(my_root "$node" 'SELECT @@gtid_binlog_pos' 2>/dev/null || echo '?')"
    fi
  done
}

need_replica() {
  case $1 in
    pg-replica-1 | pg-replica-2 | my-replica) ;;
    *) die "$1 is not a replica" ;;
  esac
}

need_running() {
  case $(node_kind "$1") in
    pg) pg_running "$1" || die "$1 is down" ;;
    my) my_running "$1" || die "$1 is down" ;;
  esac
}

verb_delay() {
  local node=${1:?delay NODE SECS} secs=${2:?delay NODE SECS}
  need_replica "$node"
  need_running "$node"
  [[ $secs =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SECS must be a non-negative number, got '$secs'"
  if [[ $(node_kind "$node") == pg ]]; then
    local ms want
    ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 + 0.5 }')
    if ((ms == 0)); then
      psql_su "$node" "ALTER SYSTEM RESET recovery_min_apply_delay" "SELECT pg_reload_conf()" >/dev/null
      want=0
    else
      psql_su "$node" "ALTER SYSTEM SET recovery_min_apply_delay = '${ms}ms'" "SELECT pg_reload_conf()" >/dev/null
      want=$ms
    fi
    # The reload is asynchronous: return only once new sessions see the new value.
    wait_for 5 pg_delay_is "$node" "$want" || die "$node did not take recovery_min_apply_delay=${ms}ms"
    log "$node: recovery_min_apply_delay=${ms}ms"
  else
    local n
    n=$(awk -v s="$secs" 'BEGIN { n = int(s); if (n < s) n++; print n }')
    my_root "$node" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=$n; START SLAVE;"
    wait_for "$WAIT_SECS" my_slave_running "$node" || die "$node did not restart replication" "$(my_logf "$node")"
    log "$node: MASTER_DELAY=$n"
  fi
}

pg_delay_is() {
  [[ $(psql_su "$1" "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'") == "$2" ]]
}

pg_replay_state_is() { [[ $(psql_su "$1" "SELECT pg_get_wal_replay_pause_state()") == "$2" ]]; }

verb_pause() {
  local node=${1:?pause NODE}
  need_replica "$node"
  need_running "$node"
  if [[ $(node_kind "$node") == pg ]]; then
    psql_su "$node" "SELECT pg_wal_replay_pause()" >/dev/null
    # Pausing is only requested by the call; wait until the startup process really stopped.
    wait_for 10 pg_replay_state_is "$node" paused || die "$node did not pause replay" "$(pg_logf "$node")"
  else
    my_root "$node" "STOP SLAVE SQL_THREAD"
  fi
  log "$node: replay paused"
}

verb_resume() {
  local node=${1:?resume NODE}
  need_replica "$node"
  need_running "$node"
  if [[ $(node_kind "$node") == pg ]]; then
    psql_su "$node" "SELECT pg_wal_replay_resume()" >/dev/null
    wait_for 10 pg_replay_state_is "$node" "not paused" || die "$node did not resume replay" "$(pg_logf "$node")"
  else
    my_root "$node" "START SLAVE SQL_THREAD"
    wait_for "$WAIT_SECS" my_slave_running "$node" ||
      die "$node SQL thread not running: $(my_slave_field "$node" Last_SQL_Error)" "$(my_logf "$node")"
  fi
  log "$node: replay resumed"
}

verb_down() {
  local node=${1:?down NODE}
  case $(node_kind "$node") in
    pg) pg_stop_node "$node" immediate ;;
    my) my_stop_node "$node" KILL ;;
    bouncer) bouncer_stop KILL ;;
  esac
}

verb_up() {
  local node=${1:?up NODE}
  case $(node_kind "$node") in
    pg)
      pg_start_node "$node"
      pg_wait_app_login "$node"
      if pg_is_replica_conf "$node"; then
        pg_running pg-primary && pg_wait_replica_streaming "$node"
      else
        # Standbys that are running reconnect after wal_retrieve_retry_interval.
        local r
        for r in "${PG_REPLICAS[@]}"; do
          if pg_running "$r" && pg_is_replica_conf "$r"; then pg_wait_replica_streaming "$r"; fi
        done
      fi
      ;;
    my)
      my_start_node "$node"
      wait_for "$WAIT_SECS" my_app "$node" "SELECT 1" || die "$node does not accept $APP_USER" "$(my_logf "$node")"
      local r=my-replica
      if my_running $r && [[ -n $(my_slave_field $r Slave_IO_Running) ]] && my_running my-primary; then
        wait_for "$WAIT_SECS" my_slave_io_yes $r ||
          die "$r is not connected to my-primary: $(my_slave_field $r Last_IO_Error)" "$(my_logf $r)"
      fi
      ;;
    bouncer)
      pg_running pg-primary || log "warning: pg-primary is down, pgbouncer will fail server logins"
      bouncer_start
      pg_running pg-primary && bouncer_wait_login
      ;;
  esac
  log "$node: up"
}

my_slave_io_yes() { [[ $(my_slave_field "$1" Slave_IO_Running) == Yes ]]; }

# promote only promotes: the old primary keeps running (a test that wants a real failover takes it
# `down` first). Afterwards the topology is changed for good; `reset` (or destroy + start) rebuilds
# a fresh one.
verb_promote() {
  local node=${1:?promote NODE}
  need_replica "$node"
  need_running "$node"
  if [[ $(node_kind "$node") == pg ]]; then
    pg_is_replica_conf "$node" || die "$node is already promoted"
    as_pg pg_ctl promote -w -t "$WAIT_SECS" -D "$(pg_data "$node")" >/dev/null 2>&1 ||
      die "promoting $node failed" "$(pg_logf "$node")"
    # Without an immediate checkpoint pg_rewind later says "no rewind required" and a node
    # rejoined to the new timeline fails.
    psql_su "$node" "CHECKPOINT" >/dev/null
  else
    # Apply everything already received before cutting the replica loose: RESET SLAVE ALL
    # deletes the relay log, and with it any transaction received but not yet applied (with
    # semi-synchronous replication those are commits the old primary acknowledged).
    local io_pos
    io_pos=$(my_slave_field "$node" Gtid_IO_Pos)
    if [[ -n $io_pos ]]; then
      [[ $(my_root "$node" "SELECT MASTER_GTID_WAIT('$io_pos', $WAIT_SECS)") == 0 ]] ||
        die "$node did not apply its relay log up to $io_pos within $WAIT_SECS s"
    fi
    my_root "$node" "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;"
  fi
  log "$node: promoted to primary"
}

pg_wait_sync() {
  local target r
  pg_running pg-primary || die "wait-sync: pg-primary is down"
  # The flush position, not pg_current_wal_lsn(): every commit is flushed (synchronous_commit is
  # on), standbys only ever receive flushed WAL, and WAL that is written but not yet flushed (hint
  # bit records, ...) would make us wait for the WAL writer for nothing.
  target=$(psql_su pg-primary "SELECT pg_current_wal_flush_lsn()" 2>/dev/null) || die "wait-sync: pg-primary unreachable"
  for r in "${PG_REPLICAS[@]}"; do
    pg_running "$r" || die "wait-sync: $r is down"
    if ! wait_for "$SYNC_SECS" pg_replayed "$r" "$target"; then
      die "wait-sync: $r replayed $(psql_su "$r" "SELECT pg_last_wal_replay_lsn()" 2>/dev/null || echo '?')," \
        "pg-primary is at $target (after $SYNC_SECS s)" "$(pg_logf "$r")"
    fi
  done
  log "wait-sync pg: replicas at $target"
}

pg_replayed() {
  [[ $(psql_su "$1" "SELECT coalesce(pg_last_wal_replay_lsn() >= '$2'::pg_lsn, false)") == t ]]
}

my_wait_sync() {
  local target res
  my_running my-primary || die "wait-sync: my-primary is down"
  target=$(my_root my-primary "SELECT @@gtid_binlog_pos") || die "wait-sync: my-primary unreachable"
  my_running my-replica || die "wait-sync: my-replica is down"
  res=$(my_root my-replica "SELECT MASTER_GTID_WAIT('$target', $SYNC_SECS)") || die "wait-sync: my-replica unreachable"
  [[ $res == 0 ]] ||
    die "wait-sync: my-replica at '$(my_root my-replica 'SELECT @@gtid_slave_pos')', my-primary at '$target' (after $SYNC_SECS s)" "$(my_logf my-replica)"
  log "wait-sync mysql: replica at '$target'"
}

verb_wait_sync() {
  parse_part "${1:-}"
  [[ $PART == mysql ]] || pg_wait_sync
  [[ $PART == pg ]] || my_wait_sync
}

# Quick path: restart what is down, drop delays and pauses. Roles changed (a promote) or a broken
# replica: rebuilding the part from scratch is faster and more robust than rewinding.
pg_reset() {
  local r rebuild=""
  if ! pg_initialized; then
    pg_start
    return
  fi
  for r in "${PG_REPLICAS[@]}"; do pg_is_replica_conf "$r" || rebuild="$r was promoted"; done
  if [[ -z $rebuild ]]; then
    pg_start_node pg-primary
    # Synchronous replication (a test may turn it on) would block every commit while a
    # standby is down.
    psql_su pg-primary "ALTER SYSTEM RESET synchronous_standby_names" "SELECT pg_reload_conf()" >/dev/null
    for r in "${PG_REPLICAS[@]}"; do
      pg_start_node "$r"
      psql_su "$r" "ALTER SYSTEM RESET recovery_min_apply_delay" "SELECT pg_reload_conf()" \
        "SELECT pg_wal_replay_resume()" >/dev/null
    done
    bouncer_start
    for r in "${PG_REPLICAS[@]}"; do
      if ! wait_for 10 pg_delay_is "$r" 0; then rebuild="$r keeps a replay delay"; fi
    done
    if [[ -z $rebuild ]] && ! wait_for 10 pg_all_streaming; then rebuild="standbys are not streaming"; fi
    if [[ -z $rebuild ]] && ! (pg_wait_sync) 2>/dev/null; then rebuild="standbys do not catch up"; fi
  fi
  if [[ -n $rebuild ]]; then
    log "reset pg: $rebuild, rebuilding the PostgreSQL topology"
    pg_destroy
    pg_start
    return
  fi
  pg_wait_healthy
}

my_reset() {
  local rebuild=""
  if ! my_initialized; then
    my_start
    return
  fi
  my_start_node my-primary
  my_start_node my-replica
  if [[ -z $(my_slave_field my-replica Slave_IO_Running) ]]; then
    rebuild="my-replica was promoted"
  else
    [[ $(my_root my-replica "SELECT @@read_only") == 1 ]] || my_root my-replica "SET GLOBAL read_only = 1"
    # Semi-synchronous replication (a test may turn it on) would stall commits while the
    # replica is down.
    my_root my-primary "SET GLOBAL rpl_semi_sync_master_enabled = OFF"
    my_root my-replica "SET GLOBAL rpl_semi_sync_slave_enabled = OFF"
    if [[ $(my_slave_field my-replica SQL_Delay) != 0 ]]; then
      my_root my-replica "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0"
    fi
    local err
    err=$(my_slave_broken my-replica || true)
    if [[ -n $err ]]; then
      # A diverged replica fails again at once after START SLAVE: do not wait for it.
      rebuild="my-replica does not replicate: $err"
    else
      my_root my-replica "START SLAVE" # only a note for threads that already run
      wait_for 10 my_slave_running my-replica ||
        rebuild="my-replica does not replicate: $(my_slave_broken my-replica || echo 'threads not running')"
    fi
    if [[ -n $rebuild ]]; then
      :
    elif ! (my_wait_sync) 2>/dev/null; then
      rebuild="my-replica does not catch up"
    fi
  fi
  if [[ -n $rebuild ]]; then
    log "reset mysql: $rebuild, rebuilding the MariaDB topology"
    my_destroy
    my_start
    return
  fi
  my_wait_healthy
}

verb_reset() {
  local t0
  parse_part "${1:-}"
  t0=$(now)
  ensure_state_dir
  case $PART in
    pg) pg_reset ;;
    mysql) my_reset ;;
    all) run_parallel pg_reset my_reset ;;
  esac
  log "reset $PART: healthy ($(elapsed "$t0") s)"
}

usage() {
  sed -n '2,/^# NODE:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local verb=${1:-}
  [[ -n $verb ]] || usage
  shift
  case $verb in
    delay | pause | resume | down | up | promote)
      [[ $# -ge 1 ]] || die "$verb needs a NODE"
      node_kind "$1" >/dev/null # dies on an unknown node (a die inside $(...) would not stop us)
      ;;
  esac
  case $verb in
    status | env | help | -h | --help) ;;
    *) take_lock ;;
  esac
  case $verb in
    install) verb_install ;;
    start) verb_start "$@" ;;
    stop) verb_stop "$@" ;;
    destroy) verb_destroy ;;
    status) verb_status ;;
    env) verb_env ;;
    delay) verb_delay "$@" ;;
    pause) verb_pause "$@" ;;
    resume) verb_resume "$@" ;;
    down) verb_down "$@" ;;
    up) verb_up "$@" ;;
    promote) verb_promote "$@" ;;
    reset) verb_reset "$@" ;;
    wait-sync) verb_wait_sync "$@" ;;
    -h | --help | help) usage ;;
    *)
      echo "cluster: unknown verb '$verb'" >&2
      usage
      ;;
  esac
}

main "$@"
