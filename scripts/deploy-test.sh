#!/usr/bin/env bash
# The deployment test: ansible deploys a hub and two spokes onto real test hosts and the fleet
# is checked end to end, with counted figures.
#
# Test hosts: one network namespace per host (no default route), each joined by a veth to a
# bridge in a control namespace, where ansible and the clients run; each host also has its own
# mount, PID and UTS namespaces, overlays on /etc, /var/lib, /var/log and /usr/local (so users,
# files and processes do not leak between hosts or onto this machine), and runsvdir as its PID 1
# supervising OpenSSH's sshd and, once deployed, the node. Ansible connects over SSH with keys.
#
# What it checks: pre-flight refuses inventories that do not match the topology, naming both,
# before any host changes; site.yml deploys; a write at one spoke is readable at the other;
# /_fleet lists both spokes connected; a second site.yml reports changed=0 on every host; a
# SIGKILLed node is restarted by runit; rolling-restart.yml and upgrade.yml (to a second binary)
# run while a client loop reads and writes through `sessionfleet get|put` from the control
# namespace: zero failed reads, zero lost acknowledged writes.
#
# Usage (root; Debian packages openssh-server runit curl; the venv from scripts/ansible-venv.sh):
#   scripts/deploy-test.sh              # builds the binary with cargo unless SESSIONFLEET_BIN is set
#   SF_DEPLOY_KEEP=1 scripts/deploy-test.sh   # keep $SF_DEPLOY_WORK (logs) afterwards
# Exit 0 = passed, 1 = failed, 77 = skipped (not root, or a tool missing; with
# SF_DEPLOY_REQUIRE=1 a skip is a failure, as in CI).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/deploy-test.sh"
P=sfd                     # prefix of every namespace this test makes (and only those)
NET=10.213.0              # the test hosts' /24, on the bridge in the control namespace
CTL=$P-ctl
HOSTS=(london eu-west-1 us-east-1)
IPS=("$NET.10" "$NET.11" "$NET.12")
HTTP_PORT=5984
GRPC_PORT=6984
WORK=${SF_DEPLOY_WORK:-/tmp/sf-deploy-test}
VENV=${SF_ANSIBLE_VENV:-/var/tmp/sf-ansible-venv}
# Bounds of the client loop (each operation is one CLI process).
LOOP_MAX_OPS=${SF_DEPLOY_LOOP_MAX_OPS:-4000}
LOOP_MAX_SECS=${SF_DEPLOY_LOOP_MAX_SECS:-300}
CURL_AUTH=()   # the admin token header, once the secrets file is made

say() { printf '[deploy-test %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() {
  say "FAIL: $*"
  exit 1
}
now() { echo "${EPOCHREALTIME}"; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
in_ctl() { ip netns exec "$CTL" "$@"; }

# ---------------------------------------------------------------------------------------------
# Runs as PID 1 of a test host (inside its network namespace, in new mount/UTS/PID namespaces):
# gives the host its own /etc, /var/lib, /var/log, /usr/local, /run, /root and /tmp, then
# becomes runsvdir. Arguments: host name, host directory (overlay layers).
host_init() {
  local name=$1 dir=$2 d k
  hostname "$name"
  for d in etc var/lib var/log usr/local; do
    k=${d//\//_}
    mount -t overlay "$P-$k" -o "lowerdir=/$d,upperdir=$dir/$k.up,workdir=$dir/$k.wk" "/$d"
  done
  mount -t tmpfs -o mode=0755 "$P-run" /run
  mkdir -m 0755 /run/sshd
  mount -t tmpfs -o mode=0700 "$P-root" /root
  # The host's own service directory (a whiteout in its overlay; this machine's is untouched).
  rm -rf /etc/service
  mkdir -m 0755 /etc/service
  ln -s /etc/sv/$P-sshd /etc/service/$P-sshd
  # Last: the host directory may itself be under /tmp.
  mount -t tmpfs -o mode=1777 "$P-tmp" /tmp
  cd /
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    runsvdir -P /etc/service
}

# ---------------------------------------------------------------------------------------------
# The client loop, run in the control namespace: alternately writes a new session through one
# datacentre's edge-client chain and reads the previous one (written through the other
# datacentre) through it. Every outcome is counted in files under $1. Stops at $1/stop, after
# LOOP_MAX_OPS iterations or LOOP_MAX_SECS seconds.
client_loop() {
  local out=$1 bin=$2 tag=$3
  local -a chain
  # The scheme (and, with TLS, SESSIONFLEET_TLS_CA) come from main's environment.
  local s=${SCHEME:-http}
  chain[0]="--spoke $s://$NET.11:$GRPC_PORT --hub $s://$NET.10:$GRPC_PORT --fallback $s://$NET.12:$GRPC_PORT"
  chain[1]="--spoke $s://$NET.12:$GRPC_PORT --hub $s://$NET.10:$GRPC_PORT --fallback $s://$NET.11:$GRPC_PORT"
  local i=0 w rev body acked prev_id="" prev_n="" got served end=$((SECONDS + LOOP_MAX_SECS))
  : >"$out/acked"
  : >"$out/write_failed"
  : >"$out/read_ok"
  : >"$out/read_failed"
  while [ "$i" -lt "$LOOP_MAX_OPS" ] && [ "$SECONDS" -lt "$end" ] && [ ! -e "$out/stop" ]; do
    i=$((i + 1))
    w=$((i % 2))
    body="{\"tag\":\"$tag\",\"n\":$i}"
    acked=0
    # shellcheck disable=SC2086 # the chain is a list of flags
    if rev=$("$bin" put ${chain[$w]} "$tag-$i" "$body" 2>>"$out/put.err") && [ -n "$rev" ]; then
      echo "$tag-$i $rev" >>"$out/acked"
      acked=1
    else
      echo "$tag-$i" >>"$out/write_failed"
    fi
    if [ -n "$prev_id" ]; then
      # shellcheck disable=SC2086
      if got=$("$bin" get ${chain[$w]} "$prev_id" 2>"$out/get.last") &&
        [[ "$got" == *"\"n\":$prev_n}"* ]]; then
        served=$(sed -n 's/.* served by \([^ ]*\) in .*/\1/p' "$out/get.last")
        echo "$prev_id ${served:-?}" >>"$out/read_ok"
      else
        echo "$prev_id $(tr '\n' ' ' <"$out/get.last") got=${got:-}" >>"$out/read_failed"
      fi
    fi
    if [ "$acked" = 1 ]; then
      prev_id="$tag-$i"
      prev_n=$i
    fi
  done
  echo "$i" >"$out/iterations"
  touch "$out/done"
}

# ---------------------------------------------------------------------------------------------
# Cleanup: every process in our namespaces (by id), the namespaces, the work directory.

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-" || true; }

kill_namespace_processes() {
  local ns=$1 pids tries=0
  pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
  [ -n "${pids// /}" ] || return 0
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
  while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && [ "$tries" -lt 50 ]; do
    sleep 0.1
    tries=$((tries + 1))
  done
}

cleanup_all() {
  local ns s
  if [ -d "$WORK/cm" ]; then
    for s in "$WORK"/cm/*; do
      if [ -S "$s" ]; then ssh -o ControlPath="$s" -O exit "$P" >/dev/null 2>&1 || true; fi
    done
  fi
  for ns in $(our_namespaces); do
    kill_namespace_processes "$ns"
  done
  for ns in $(our_namespaces); do
    ip netns del "$ns" 2>/dev/null || true
  done
}

on_exit() {
  local rc=$?
  set +e
  if [ -n "${LOOP_PID:-}" ]; then
    kill "$LOOP_PID" 2>/dev/null
    wait "$LOOP_PID" 2>/dev/null
  fi
  if [ "$rc" -ne 0 ] && [ -d "$WORK/hosts" ]; then
    say "failed (exit $rc); the nodes' last log lines:"
    for h in "${HOSTS[@]}"; do
      tail -n 15 "$WORK/hosts/$h/var_log.up/sessionfleet/current" 2>/dev/null | sed "s/^/  $h: /"
    done
    [ -n "${LAST_LOG:-}" ] && [ -f "$LAST_LOG" ] && {
      say "last ansible log ($LAST_LOG), tail:"
      tail -n 40 "$LAST_LOG"
    }
  fi
  cleanup_all
  if [ "${SF_DEPLOY_KEEP:-0}" = 1 ]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# Requirements.

skip() {
  if [ "${SF_DEPLOY_REQUIRE:-0}" = 1 ]; then
    fail "required but cannot run: $*"
  fi
  echo "SKIP: deploy-test: $*"
  exit 77
}

check_requirements() {
  [ "$(id -u)" = 0 ] || skip "needs root (network, mount and PID namespaces)"
  local missing=() c
  for c in ip unshare sshd ssh ssh-keygen runsvdir sv chpst svlogd curl python3 \
    systemd-analyze objcopy sha256sum; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ -x "$VENV/bin/ansible-playbook" ] || missing+=("ansible venv $VENV (scripts/ansible-venv.sh)")
  [ "${#missing[@]}" -eq 0 ] ||
    skip "missing: ${missing[*]} (apt-get install openssh-server runit curl binutils systemd; scripts/ansible-venv.sh)"
  ip netns list >/dev/null 2>&1 || skip "ip netns does not work here"
}

find_binary() {
  if [ -n "${SESSIONFLEET_BIN:-}" ]; then
    echo "$SESSIONFLEET_BIN"
    return
  fi
  # The test command's own build (same features), so CI compiles nothing extra for this.
  (cd "$ROOT" && cargo test --workspace --no-run --message-format=json) |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["name"] == "sessionfleet" and "bin" in m["target"]["kind"]
            and not m["profile"]["test"]):
        print(m["executable"])' | tail -n 1
}

# The namespaces have fixed names: one run at a time on a machine.
take_lock() {
  exec 9>"/run/lock/$P-deploy-test.lock"
  flock -w 900 9 || fail "another deploy test held the lock for 15 minutes"
}

# ---------------------------------------------------------------------------------------------
# Test hosts.

make_network() {
  local i ns
  ip netns add "$CTL"
  ip -n "$CTL" link set lo up
  ip -n "$CTL" link add br0 type bridge
  ip -n "$CTL" addr add "$NET.1/24" dev br0
  ip -n "$CTL" link set br0 up
  for i in "${!HOSTS[@]}"; do
    ns=$P-${HOSTS[$i]}
    ip netns add "$ns"
    # Fixed MACs: a re-created host keeps its address's neighbour entry valid.
    ip -n "$CTL" link add "v$i" address "02:13:00:00:01:0$i" type veth \
      peer name eth0 address "02:13:00:00:00:0$i" netns "$ns"
    ip -n "$CTL" link set "v$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${IPS[$i]}/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

make_ssh_keys() {
  mkdir -p "$WORK/ssh" "$WORK/cm"
  ssh-keygen -q -t ed25519 -N '' -C "$P-controller" -f "$WORK/ssh/id_ed25519"
  : >"$WORK/ssh/known_hosts"
  cat >"$WORK/ssh/config" <<EOF
Host *
  User root
  IdentityFile $WORK/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $WORK/ssh/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  ControlMaster auto
  ControlPath $WORK/cm/%C
  ControlPersist 60s
  LogLevel ERROR
EOF
}

start_host() {
  local i=$1 name=${HOSTS[$1]} h
  h=$WORK/hosts/$name
  mkdir -p "$h"/{etc,var_lib,var_log,usr_local}.{up,wk} "$h/etc.up/ssh" "$h/etc.up/sv/$P-sshd"
  # sshd's host key, the controller's public key and the config, in the host's /etc layer.
  ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$h/etc.up/ssh/${P}_host_ed25519_key"
  cp "$WORK/ssh/id_ed25519.pub" "$h/etc.up/ssh/${P}_authorized_keys"
  cat >"$h/etc.up/ssh/${P}_sshd_config" <<EOF
ListenAddress ${IPS[$i]}:22
HostKey /etc/ssh/${P}_host_ed25519_key
AuthorizedKeysFile /etc/ssh/${P}_authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  cat >"$h/etc.up/sv/$P-sshd/run" <<EOF
#!/bin/sh
exec 2>&1
exec /usr/sbin/sshd -D -e -f /etc/ssh/${P}_sshd_config
EOF
  chmod 0755 "$h/etc.up/sv/$P-sshd/run"
  echo "$name" >"$h/etc.up/hostname"
  echo "${IPS[$i]} $(cut -d' ' -f1-2 "$h/etc.up/ssh/${P}_host_ed25519_key.pub")" >>"$WORK/ssh/known_hosts"
  ip netns exec "$P-$name" unshare --mount --uts --pid --fork --mount-proc \
    "$SELF" host-init "$name" "$h" </dev/null >"$h/console.log" 2>&1 &
  # Reaped by killing its namespace (cleanup_all), not waited for.
  disown
}

on_host() {
  local i=$1
  shift
  in_ctl ssh -F "$WORK/ssh/config" "${IPS[$i]}" "$@"
}

wait_for_ssh() {
  local i tries
  for i in "${!HOSTS[@]}"; do
    tries=0
    until on_host "$i" true 2>/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -lt 100 ] || fail "sshd on ${HOSTS[$i]} (${IPS[$i]}) did not answer within 20 s: $(cat "$WORK/hosts/${HOSTS[$i]}/console.log")"
      sleep 0.2
    done
  done
}

# ---------------------------------------------------------------------------------------------
# The fleet's files: topology, certificates, inventory.

write_fleet() {
  local tls=$1
  mkdir -p "$WORK/fleet" "$WORK/inventory/group_vars"
  cat >"$WORK/fleet/topology.toml" <<EOF
# The deployment test's fleet: a hub and two spokes on the test hosts.
[fleet]
name = "deploy-test"

[hub]
name = "london"
http = "$NET.10:$HTTP_PORT"
grpc = "$NET.10:$GRPC_PORT"

[[datacentre]]
name = "eu-west"
failover = ["london", "us-east"]

  [[datacentre.spoke]]
  name = "eu-west-1"
  http = "$NET.11:$HTTP_PORT"
  grpc = "$NET.11:$GRPC_PORT"

[[datacentre]]
name = "us-east"
failover = ["london", "eu-west"]

  [[datacentre.spoke]]
  name = "us-east-1"
  http = "$NET.12:$HTTP_PORT"
  grpc = "$NET.12:$GRPC_PORT"

[[database]]
name = "sessions"
expiry_field = "expires_at"

[links]
# Reconnect quickly after a restart of the hub (the rolling restart waits for it).
backoff_initial_ms = 100
backoff_max_ms = 1000
checkpoint_interval_ms = 500
connect_timeout_ms = 1000
EOF
  if [ "$tls" = 1 ]; then
    cat >>"$WORK/fleet/topology.toml" <<'EOF'

[tls]
ca = "tls/ca.pem"
cert = "tls/{node}.pem"
key = "tls/{node}.key"
EOF
  fi
  "$BIN1" topology inventory "$WORK/fleet/topology.toml" >"$WORK/inventory/hosts.ini"
  cat >"$WORK/inventory/group_vars/all.yml" <<EOF
---
ansible_user: root
ansible_python_interpreter: /usr/bin/python3
sessionfleet_service_manager: runit
sessionfleet_binary_src: $BIN1
sessionfleet_topology_src: $WORK/fleet/topology.toml
EOF
  # The fleet's secrets file, made as an operator does (`sessionfleet secrets`), named by the
  # topology's [auth] and shipped by the role (0600, the node's user). The checks below use an
  # admin token, the client loop an app token; the cookie secret is the mark that must never
  # reach an ansible log.
  local secrets=$WORK/fleet/secrets.toml
  rm -f "$secrets"
  "$BIN1" secrets init "$secrets" --iterations 1000 >/dev/null 2>&1 || fail "sessionfleet secrets init failed"
  ADMIN_TOKEN=$("$BIN1" secrets token "$secrets" deploy-check --role admin 2>/dev/null) ||
    fail "sessionfleet secrets token failed"
  SESSIONFLEET_TOKEN=$("$BIN1" secrets token "$secrets" deploy-app --role app 2>/dev/null) ||
    fail "sessionfleet secrets token failed"
  export SESSIONFLEET_TOKEN
  CURL_AUTH=(-H "Authorization: Bearer $ADMIN_TOKEN")
  SECRET_MARK=$(sed -n 's/^secret = "\(.*\)"$/\1/p' "$secrets")
  [ -n "$SECRET_MARK" ] || fail "the secrets file has no cookie secret"
  printf '\n[auth]\nsecrets = "secrets.toml"\n' >>"$WORK/fleet/topology.toml"
  echo "sessionfleet_secrets_src: $secrets" >>"$WORK/inventory/group_vars/all.yml"
  if [ "$tls" = 1 ]; then
    cat >>"$WORK/inventory/group_vars/all.yml" <<EOF
sessionfleet_tls_ca_src: $WORK/fleet/tls/ca.pem
sessionfleet_tls_cert_src: "$WORK/fleet/tls/{{ inventory_hostname }}.pem"
sessionfleet_tls_key_src: "$WORK/fleet/tls/{{ inventory_hostname }}.key"
EOF
  fi
}

# ---------------------------------------------------------------------------------------------
# Ansible.

# Runs a playbook in the control namespace; the log is $WORK/logs/$1.log. Returns its status.
playbook() {
  local name=$1 inventory=$2 book=$3
  shift 3
  LAST_LOG=$WORK/logs/$name.log
  in_ctl env HOME="$WORK/home" ANSIBLE_HOME="$WORK/ansible-home" \
    ANSIBLE_LOCAL_TEMP="$WORK/ansible-tmp" ANSIBLE_CONFIG="$ROOT/ansible/ansible.cfg" \
    ANSIBLE_SSH_ARGS="-F $WORK/ssh/config" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
    PATH="$VENV/bin:$PATH" \
    "$VENV/bin/ansible-playbook" -i "$inventory" "$ROOT/ansible/$book" "$@" >"$LAST_LOG" 2>&1
}

# "host=changed" for every host of the last run's recap.
recap_changed() {
  sed -n 's/^\([a-z0-9.-]*\) *: ok=[0-9]* *changed=\([0-9]*\).*/\1=\2/p' "$1" | tr '\n' ' '
}

recap_failed() {
  sed -n 's/^\([a-z0-9.-]*\) *: .*failed=\([0-9]*\).*/\2/p' "$1" | awk '{s+=$1} END {print s+0}'
}

# A pre-flight run that must fail, with a message naming the topology node and the host.
expect_refused() {
  local label=$1 inventory_text=$2
  shift 2
  local dir=$WORK/inventory-$label
  mkdir -p "$dir"
  cp -r "$WORK/inventory/group_vars" "$dir/"
  printf '%s\n' "$inventory_text" >"$dir/hosts.ini"
  if playbook "preflight-$label" "$dir/hosts.ini" site.yml; then
    fail "site.yml with the $label inventory succeeded; pre-flight should have refused it"
  fi
  local msg
  for msg in "$@"; do
    grep -qF -- "$msg" "$LAST_LOG" || fail "pre-flight ($label) did not say \"$msg\"; see $LAST_LOG"
  done
  grep -q "^london .*changed=" "$LAST_LOG" && fail "pre-flight ($label) let plays reach the hosts"
  say "pre-flight refused the $label inventory: $(grep -o '"msg": "[^"]*"' "$LAST_LOG" | head -n 1 | cut -c9-)"
}

# ---------------------------------------------------------------------------------------------
# Checks.

http_get() { in_ctl curl -fsS --max-time 5 "${CURL_TLS[@]}" "${CURL_AUTH[@]}" "$@"; }

node_url() { echo "$SCHEME://${IPS[$1]}:$HTTP_PORT"; }

runit_pid() {
  on_host "$1" sv status sessionfleet | sed -n 's/^run: [^(]*(pid \([0-9]*\)).*/\1/p'
}

# Starts the client loop in the background (control namespace) into $WORK/loop-$1.
start_loop() {
  local tag=$1 dir=$WORK/loop-$1 tries=0
  mkdir -p "$dir"
  in_ctl "$SELF" client-loop "$dir" "$BIN1" "$tag" &
  LOOP_PID=$!
  # Let it complete a few operations before anything restarts.
  until [ "$(wc -l 2>/dev/null <"$dir/read_ok" || echo 0)" -ge 3 ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 150 ] || fail "the client loop made no progress in 30 s: $(tail -n 3 "$dir/put.err" 2>/dev/null)"
    sleep 0.2
  done
}

# Stops the loop and checks its figures: every read succeeded, and every acknowledged write is
# on every node (hub and both spokes) with the acknowledged revision.
stop_loop_and_verify() {
  local tag=$1 dir=$WORK/loop-$1
  touch "$dir/stop"
  wait "$LOOP_PID" || fail "the client loop failed"
  LOOP_PID=
  local iterations acked wfail rok rfail served
  iterations=$(cat "$dir/iterations")
  acked=$(wc -l <"$dir/acked")
  wfail=$(wc -l <"$dir/write_failed")
  rok=$(wc -l <"$dir/read_ok")
  rfail=$(wc -l <"$dir/read_failed")
  served=$(awk '{print $2}' "$dir/read_ok" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')
  local lost
  lost=$(SF_CHECK_TOKEN="${ADMIN_TOKEN:-}" in_ctl python3 - "$dir/acked" "$SCHEME" "${CA_FILE:-}" "${CLIENT_CERT:-}" "${CLIENT_KEY:-}" \
    "$(node_url 0)" "$(node_url 1)" "$(node_url 2)" <<'EOF'
import json, os, ssl, sys, time, urllib.request
acked_file, scheme, ca, cert, key, *nodes = sys.argv[1:]
token = os.environ.get("SF_CHECK_TOKEN", "")
acked = dict(line.split() for line in open(acked_file) if line.strip())
ctx = None
if scheme == "https":
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
def revs(node):
    req = urllib.request.Request(f"{node}/sessions/_all_docs")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        return {row["id"]: row["value"]["rev"] for row in json.load(r)["rows"]}
deadline = time.time() + 60
while True:
    missing = {}
    for n in nodes:
        try:
            have = revs(n)
        except Exception as e:  # a node still catching up after its restart
            have = {}
        missing[n] = [i for i, rev in acked.items() if have.get(i) != rev]
    if all(not m for m in missing.values()) or time.time() > deadline:
        break
    time.sleep(1)
print(" ".join(f"{n.split('//')[1]}={len(m)}" for n, m in missing.items()))
for n, m in missing.items():
    for i in m[:5]:
        print(f"lost at {n}: {i} rev {acked[i]}", file=sys.stderr)
EOF
  )
  local total_lost
  total_lost=$(echo "$lost" | tr ' ' '\n' | awk -F= '{s+=$2} END {print s+0}')
  FIGURES+=("$tag: $iterations iterations; writes acknowledged $acked, failed $wfail; reads ok $rok (${served%, }), failed $rfail; acknowledged writes missing after convergence: $lost")
  say "${FIGURES[-1]}"
  if [ "$rfail" -ne 0 ]; then
    head -n 5 "$dir/read_failed"
    fail "$tag: $rfail failed reads"
  fi
  [ "$total_lost" -eq 0 ] || fail "$tag: $total_lost acknowledged writes lost"
  [ "$acked" -gt 0 ] || fail "$tag: no write was acknowledged"
  [ "$rok" -gt 0 ] || fail "$tag: no read was made"
}

# ---------------------------------------------------------------------------------------------

main() {
  check_requirements
  local started
  started=$(now)
  BIN=$(find_binary)
  [ -x "$BIN" ] || fail "no sessionfleet binary (set SESSIONFLEET_BIN or build with cargo)"
  take_lock
  cleanup_all # leftovers of an interrupted run
  rm -rf "$WORK"
  mkdir -p "$WORK"/{bin,logs,home,ansible-home,ansible-tmp}
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  FIGURES=()

  # The deployed binary without debug info (it is copied to three hosts), and the "new release"
  # for upgrade.yml: the same program with a build note added, so its checksum differs.
  BIN1=$WORK/bin/sessionfleet-1
  BIN2=$WORK/bin/sessionfleet-2
  objcopy --strip-debug "$BIN" "$BIN1"
  echo "deploy-test upgrade build $(date -u +%FT%TZ)" >"$WORK/bin/note"
  objcopy --add-section ".note.sessionfleet.build=$WORK/bin/note" "$BIN1" "$BIN2"
  "$BIN2" --version >/dev/null || fail "the upgrade binary does not run"

  # TLS when the binary can mint certificates (the security issue), plaintext otherwise.
  local tls=0
  export SCHEME=http
  CURL_TLS=()
  if "$BIN1" certs --help >/dev/null 2>&1; then
    tls=1
  fi

  say "test hosts: ${HOSTS[*]} at ${IPS[*]} (bridge $NET.1/24 in namespace $CTL)"
  make_network
  make_ssh_keys
  for i in "${!HOSTS[@]}"; do start_host "$i"; done
  wait_for_ssh
  local i pid1
  for i in "${!HOSTS[@]}"; do
    pid1=$(on_host "$i" cat /proc/1/comm)
    [ "$pid1" = runsvdir ] || fail "${HOSTS[$i]}: PID 1 is $pid1, not runsvdir"
    [ "$(on_host "$i" hostname)" = "${HOSTS[$i]}" ] || fail "${HOSTS[$i]}: wrong hostname"
    on_host "$i" ip route show default | grep -q . && fail "${HOSTS[$i]} has a default route"
  done
  say "hosts up in $(since "$started") s: sshd under runsvdir (PID 1) on each, reached over SSH with keys"

  write_fleet "$tls"
  if [ "$tls" = 1 ]; then
    mint_certs
  fi
  "$BIN1" topology check "$WORK/fleet/topology.toml" >/dev/null

  # Pre-flight refusals, before the first deploy: nothing may change on any host.
  local inv
  inv=$(cat "$WORK/inventory/hosts.ini")
  expect_refused missing-host "$(grep -v 'us-east-1' <<<"$inv")" \
    "spoke us-east-1 of datacentre us-east" "has no inventory host"
  expect_refused wrong-address "${inv//ansible_host=$NET.12 /ansible_host=$NET.99 }" \
    "spoke us-east-1 of datacentre us-east" "does not match inventory host us-east-1 (ansible_host=$NET.99"
  local extra="ap-south-1 ansible_host=$NET.13 role=spoke datacentre=ap-south http_addr=$NET.13:$HTTP_PORT grpc_addr=$NET.13:$GRPC_PORT"
  expect_refused extra-host "${inv/\[spokes\]/[spokes]$'\n'$extra}" \
    "inventory host ap-south-1 (ansible_host=$NET.13) is not a node of topology"
  for i in "${!HOSTS[@]}"; do
    on_host "$i" 'test ! -e /etc/sessionfleet && ! getent passwd sessionfleet' ||
      fail "${HOSTS[$i]} changed although pre-flight refused the inventory"
  done
  FIGURES+=("pre-flight: 3 of 3 mismatched inventories refused (missing host, wrong address, extra host), no host changed")

  # Deploy.
  local t
  t=$(now)
  playbook site-1 "$WORK/inventory/hosts.ini" site.yml || fail "site.yml failed"
  [ "$(recap_failed "$LAST_LOG")" = 0 ] || fail "site.yml reported failures"
  FIGURES+=("site.yml (first run): $(since "$t") s; changed per host: $(recap_changed "$LAST_LOG")")
  say "${FIGURES[-1]}"

  # Isolation: the system user exists on each host, not on this machine.
  for i in "${!HOSTS[@]}"; do
    on_host "$i" getent passwd sessionfleet >/dev/null || fail "${HOSTS[$i]}: no sessionfleet user"
    [ "$(on_host "$i" "stat -c '%a %U' /var/lib/sessionfleet/data")" = "700 sessionfleet" ] ||
      fail "${HOSTS[$i]}: data directory is not 0700 sessionfleet"
    [ "$(on_host "$i" "stat -c '%a %U' /etc/sessionfleet/secrets.toml")" = "600 sessionfleet" ] ||
      fail "${HOSTS[$i]}: secrets file is not 0600 sessionfleet"
    on_host "$i" grep -q "$SECRET_MARK" /etc/sessionfleet/secrets.toml ||
      fail "${HOSTS[$i]}: secrets file has the wrong content"
    on_host "$i" systemd-analyze verify /etc/sessionfleet/sessionfleet.service:sessionfleet.service ||
      fail "${HOSTS[$i]}: the rendered systemd unit does not verify"
  done
  if grep -rqF "$SECRET_MARK" "$WORK/logs"; then
    fail "the secrets file's content reached an ansible log"
  fi
  local here="not on this machine"
  if getent passwd sessionfleet >/dev/null || [ -e /etc/sessionfleet ] || [ -e /usr/local/bin/sessionfleet ]; then
    here="BUT this machine has a sessionfleet user, /etc/sessionfleet or /usr/local/bin/sessionfleet too (leaked, or its own)"
  fi
  FIGURES+=("isolation: user sessionfleet, /etc/sessionfleet, /usr/local/bin/sessionfleet on each of 3 hosts, $here; data dirs 0700, secrets 0600, units verified")
  say "${FIGURES[-1]}"

  # A write at one spoke is readable at the other.
  local rev tries=0
  t=$(now)
  rev=$(in_ctl "$BIN1" put --spoke "$SCHEME://$NET.11:$GRPC_PORT" --hub "$SCHEME://$NET.11:$GRPC_PORT" \
    deploy-check '{"written_at":"eu-west-1"}' 2>/dev/null) || fail "put at eu-west-1 failed"
  until http_get "$(node_url 2)/sessions/deploy-check" 2>/dev/null | grep -q "\"_rev\":\"$rev\""; do
    tries=$((tries + 1))
    [ "$tries" -lt 150 ] || fail "the write at eu-west-1 did not reach us-east-1 within 30 s"
    sleep 0.2
  done
  FIGURES+=("write at eu-west-1 readable at us-east-1 after $(since "$t") s (rev $rev)")
  say "${FIGURES[-1]}"

  # /_fleet lists both spokes connected.
  local status
  status=$(http_get "$(node_url 0)/_fleet/status")
  python3 - "$status" <<'EOF' || fail "/_fleet/status does not list both spokes connected: $status"
import json, sys
s = json.loads(sys.argv[1])
spokes = {sp["node"]: sp["connected"] for dc in s["datacentres"] for sp in dc["spokes"]}
assert spokes == {"eu-west-1": True, "us-east-1": True}, spokes
assert s["connected_spokes"] == 2 == s["expected_spokes"], s
EOF
  http_get "$(node_url 0)/_fleet" | grep -q "2 of 2 expected spokes connected" ||
    fail "/_fleet (HTML) does not say 2 of 2 spokes connected"
  FIGURES+=("/_fleet at the hub: 2 of 2 expected spokes connected (eu-west-1, us-east-1)")
  say "${FIGURES[-1]}"

  # A second run changes nothing.
  t=$(now)
  playbook site-2 "$WORK/inventory/hosts.ini" site.yml || fail "second site.yml failed"
  local changed
  changed=$(recap_changed "$LAST_LOG")
  for i in "${HOSTS[@]}"; do
    [[ " $changed" == *" $i=0 "* ]] || fail "second site.yml changed something: $changed"
  done
  FIGURES+=("site.yml (second run): $(since "$t") s; changed per host: $changed")
  say "${FIGURES[-1]}"

  # SIGKILL: runit restarts the node.
  local old new
  old=$(runit_pid 1)
  [ -n "$old" ] || fail "eu-west-1: sv status shows no running node"
  t=$(now)
  on_host 1 kill -9 "$old"
  tries=0
  while :; do
    new=$(runit_pid 1)
    if [ -n "$new" ] && [ "$new" != "$old" ] && http_get "$(node_url 1)/_up" >/dev/null 2>&1; then
      break
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 150 ] || fail "eu-west-1 was not restarted within 30 s of SIGKILL"
    sleep 0.2
  done
  FIGURES+=("SIGKILL of eu-west-1 (pid $old): runit restarted it (pid $new), /_up answered after $(since "$t") s")
  say "${FIGURES[-1]}"

  # Rolling restart under client load.
  start_loop rolling
  t=$(now)
  playbook rolling-restart "$WORK/inventory/hosts.ini" rolling-restart.yml || fail "rolling-restart.yml failed"
  local took
  took=$(since "$t")
  local order
  # Only the restart tasks report changes in this playbook: their order is the restart order.
  order=$(sed -n 's/^changed: \[\([a-z0-9-]*\)\]$/\1/p' "$LAST_LOG" | tr '\n' ' ')
  stop_loop_and_verify rolling
  FIGURES+=("rolling-restart.yml: $took s, restarted in order: $order")
  say "${FIGURES[-1]}"

  # Upgrade to the second binary under client load.
  local sha2
  sha2=$(sha256sum "$BIN2" | cut -c1-64)
  start_loop upgrade
  t=$(now)
  playbook upgrade "$WORK/inventory/hosts.ini" upgrade.yml -e "sessionfleet_binary_src=$BIN2" ||
    fail "upgrade.yml failed"
  took=$(since "$t")
  stop_loop_and_verify upgrade
  for i in "${!HOSTS[@]}"; do
    pid=$(runit_pid "$i")
    [ "$(on_host "$i" sha256sum "/proc/$pid/exe" | cut -c1-64)" = "$sha2" ] ||
      fail "${HOSTS[$i]} does not run the upgraded binary"
  done
  FIGURES+=("upgrade.yml: $took s; all 3 nodes run the new binary (sha256 ${sha2:0:12}…); changed per host: $(recap_changed "$LAST_LOG")")
  say "${FIGURES[-1]}"

  echo
  echo "deploy-test figures ($( [ "$tls" = 1 ] && echo "TLS" || echo "plaintext"), ${#HOSTS[@]} hosts, total $(since "$started") s):"
  printf '  %s\n' "${FIGURES[@]}"
  echo "deploy-test: PASSED"
}

# `hosts`: only bring the test hosts up, check them and ansible's reach (ping), and clean up.
hosts_only() {
  check_requirements
  take_lock
  cleanup_all
  rm -rf "$WORK"
  mkdir -p "$WORK"/{bin,logs,home,ansible-home,ansible-tmp,inventory}
  trap on_exit EXIT
  local started i
  started=$(now)
  make_network
  make_ssh_keys
  for i in "${!HOSTS[@]}"; do start_host "$i"; done
  wait_for_ssh
  for i in "${!HOSTS[@]}"; do
    say "${HOSTS[$i]}: PID 1 $(on_host "$i" cat /proc/1/comm), hostname $(on_host "$i" hostname), routes: $(on_host "$i" ip route | tr '\n' ';')"
  done
  on_host 1 useradd --system sfd-probe
  on_host 1 getent passwd sfd-probe >/dev/null || fail "useradd on eu-west-1 did not take"
  on_host 2 getent passwd sfd-probe >/dev/null && fail "a user made on eu-west-1 exists on us-east-1"
  getent passwd sfd-probe >/dev/null && fail "a user made on eu-west-1 exists on this machine"
  for i in "${!HOSTS[@]}"; do echo "${HOSTS[$i]} ansible_host=${IPS[$i]} ansible_user=root ansible_python_interpreter=/usr/bin/python3"; done >"$WORK/inventory/hosts.ini"
  LAST_LOG=$WORK/logs/ping.log
  in_ctl env HOME="$WORK/home" ANSIBLE_HOME="$WORK/ansible-home" ANSIBLE_LOCAL_TEMP="$WORK/ansible-tmp" \
    ANSIBLE_CONFIG="$ROOT/ansible/ansible.cfg" ANSIBLE_SSH_ARGS="-F $WORK/ssh/config" ANSIBLE_NOCOLOR=1 \
    PATH="$VENV/bin:$PATH" "$VENV/bin/ansible" -i "$WORK/inventory/hosts.ini" all -m ansible.builtin.ping >"$LAST_LOG" 2>&1 ||
    fail "ansible ping failed"
  say "isolation ok; ansible reached $(grep -c SUCCESS "$LAST_LOG") hosts; $(since "$started") s"
}

mint_certs() {
  local tls=$WORK/fleet/tls
  mkdir -p "$tls"
  "$BIN1" certs ca --out "$tls" >/dev/null
  "$BIN1" certs nodes --topology "$WORK/fleet/topology.toml" --ca-dir "$tls" --out "$tls" >/dev/null
  # Exported: the client loop (a child of this script) and the CLI's --tls-ca read them.
  export SCHEME=https
  CA_FILE=$tls/ca.pem
  export SESSIONFLEET_TLS_CA=$CA_FILE
  CURL_TLS=(--cacert "$CA_FILE")
  say "TLS: minted a CA and node certificates with sessionfleet certs"
}

case "${1:-run}" in
host-init)
  shift
  host_init "$@"
  ;;
client-loop)
  shift
  client_loop "$@"
  ;;
run) main ;;
hosts) hosts_only ;;
cleanup) cleanup_all ;;
*)
  echo "usage: $0 [run|hosts|cleanup]" >&2
  exit 2
  ;;
esac
