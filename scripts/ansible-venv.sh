#!/usr/bin/env bash
# Creates (or reuses) the Python venv with the pinned ansible-core and ansible-lint that
# deploy the fleet and lint ansible/, and prints its path. Idempotent: a venv that already has
# the pinned versions is left alone; pip's cache makes a re-creation quick.
#
#   VENV=$(scripts/ansible-venv.sh)        # default /var/tmp/sf-ansible-venv, or $SF_ANSIBLE_VENV
set -euo pipefail

venv=${SF_ANSIBLE_VENV:-/var/tmp/sf-ansible-venv}
# ansible-core 2.19 is the newest that runs on Debian 12's Python 3.11 (2.20 needs 3.12).
core='ansible-core>=2.19,<2.20'
lint='ansible-lint>=26,<27'

have() {
  [ -x "$venv/bin/ansible-playbook" ] && [ -x "$venv/bin/ansible-lint" ] &&
    "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
core = tuple(int(x) for x in m.version("ansible-core").split(".")[:2])
lint = int(m.version("ansible-lint").split(".")[0])
sys.exit(0 if core == (2, 19) and lint == 26 else 1)
EOF
}

if ! have; then
  python=${SF_PYTHON:-/usr/bin/python3}
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$core" "$lint" >&2
  have || { echo "ansible-venv: $venv lacks $core / $lint after install" >&2; exit 1; }
fi
echo "$venv"
