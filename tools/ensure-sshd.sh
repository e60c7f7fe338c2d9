#!/usr/bin/env bash
# The tests start their own OpenSSH sshd on 127.0.0.1 (own config, port and keys): they need the
# sshd and sftp programs, never the system's ssh service. When a program is missing, this
# installs it from Debian's packages WITHOUT starting or enabling a system-wide sshd:
#
#  - /etc/ssh/sshd_not_to_be_run is created before openssh-server is installed. Debian's
#    ssh.service, ssh.socket and init script do not start sshd while it exists; it is kept, so
#    the service stays off after a reboot too (delete it to run a system-wide sshd).
#  - A temporary /usr/sbin/policy-rc.d answering 101 ("action forbidden") stops the package
#    scripts from starting any service during the install. It is removed afterwards, also when
#    the install fails; an existing policy-rc.d is left alone.
#  - With systemctl present, the ssh units the install enabled are disabled again (and stopped
#    if systemd runs); units enabled before are left as they were.
#
# Every change is said on stderr. ENSURE_SSHD_ROOT (for the tests of this script) prefixes the
# system paths, so the logic can run against a fake tree with fake apt-get/systemctl in PATH.
set -euo pipefail

R="${ENSURE_SSHD_ROOT:-}"
say() { echo "make test: $*" >&2; }

need=()
[ -x "$R/usr/sbin/sshd" ] || need+=(openssh-server)
command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
[ "${#need[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get here; install OpenSSH's sshd and sftp by hand, then run make test again"
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo -n); fi

POLICY="$R/usr/sbin/policy-rc.d"
NOT_TO_BE_RUN="$R/etc/ssh/sshd_not_to_be_run"
UNITS=(ssh.service ssh.socket)
made_policy=""

cleanup() {
  if [ -n "$made_policy" ]; then
    if "${SUDO[@]}" rm -f "$POLICY"; then
      say "removed the temporary $POLICY again"
    else
      say "WARNING: could not remove the temporary $POLICY; remove it by hand (it stops services from starting)"
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

server=""
[[ " ${need[*]} " == *" openssh-server "* ]] && server=1

declare -A enabled_before=()
if [ -n "$server" ]; then
  say "installing ${need[*]} for the SFTP tests, without starting or enabling a system-wide sshd:"
  if [ ! -e "$NOT_TO_BE_RUN" ]; then
    "${SUDO[@]}" mkdir -p "$(dirname "$NOT_TO_BE_RUN")"
    echo "Created by Report Keeper's make test: the tests run their own sshd; Debian's ssh service does not start while this file exists." \
      | "${SUDO[@]}" tee "$NOT_TO_BE_RUN" >/dev/null
    say "  created $NOT_TO_BE_RUN (kept): the ssh service will not start while it exists; delete it if you want a system-wide sshd"
  fi
  # set -C: the file is created only if it does not exist yet (never clobbers an existing one)
  # shellcheck disable=SC2016  # $1 is expanded by the inner sh
  if "${SUDO[@]}" sh -c 'set -C; printf "%s\n" "#!/bin/sh" "# Report Keeper make test: no service starts during this install" "exit 101" > "$1"' sh "$POLICY" 2>/dev/null; then
    made_policy=1
    "${SUDO[@]}" chmod 755 "$POLICY"
    say "  created a temporary $POLICY (exit 101: no service starts during the install)"
  else
    say "  kept the existing $POLICY: it decides whether services start during the install"
  fi
  if command -v systemctl >/dev/null 2>&1; then
    for unit in "${UNITS[@]}"; do
      enabled_before[$unit]="$(systemctl is-enabled "$unit" 2>/dev/null || true)"
    done
  fi
else
  say "installing ${need[*]} for the SFTP tests"
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

if [ -n "$server" ] && command -v systemctl >/dev/null 2>&1; then
  for unit in "${UNITS[@]}"; do
    now="$(systemctl is-enabled "$unit" 2>/dev/null || true)"
    if [ "$now" = "enabled" ] && [ "${enabled_before[$unit]:-}" != "enabled" ]; then
      if [ -d "$R/run/systemd/system" ]; then how=(--now); done_="disabled and stopped"; else how=(); done_="disabled"; fi
      if "${SUDO[@]}" systemctl disable "${how[@]}" --quiet "$unit"; then
        say "  $done_ $unit, which the install had enabled"
      else
        say "  WARNING: could not disable $unit; run: systemctl disable ${how[*]} $unit"
      fi
    fi
  done
fi

test -x "$R/usr/sbin/sshd"
