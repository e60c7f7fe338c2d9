#!/usr/bin/env bash
# The tests start a real OpenSSH sshd on 127.0.0.1; install Debian's openssh-server if missing.
set -euo pipefail
if [ -x /usr/sbin/sshd ] && command -v sftp >/dev/null 2>&1; then
  exit 0
fi
echo "make test: installing OpenSSH (openssh-server, openssh-client) for the SFTP tests" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test: no apt-get here; install OpenSSH's sshd and sftp by hand, then run make test again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
test -x /usr/sbin/sshd
