"""hack/setup and hack/try on a person's own machine: an nginx already running is left
running, nothing is installed without consent, and Debian's packages are kept from starting
their daemons during an install.

The first test runs the real ``hack/try`` (``make try``) beside a real nginx; the others run
a copy of ``hack/setup`` with stand-ins for ``dpkg-query`` and ``apt-get`` on PATH (nothing
is installed), since what they check is the script's own logic around the install."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class OwnNginx:
    pid: int
    port: int

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as resp:
            return bool(resp.status == 200 and resp.read() == b"mine\n")


@pytest.fixture
def own_nginx() -> Iterator[OwnNginx]:
    """A person's own nginx: a loopback port, its own config and pid file."""
    d = Path(tempfile.mkdtemp(prefix="kdoctor-own-nginx-"))
    d.chmod(0o755)  # nginx's workers (www-data) read its files
    (d / "html").mkdir()
    (d / "html" / "index.html").write_text("mine\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "nginx.conf").write_text(
        f"worker_processes 1; error_log {d}/error.log; pid {d}/nginx.pid;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;"
        f" fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;"
        f" server {{ listen 127.0.0.1:{port}; root {d}/html; }} }}\n"
    )
    subprocess.run(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], check=True)
    server = OwnNginx(int((d / "nginx.pid").read_text()), port)
    try:
        assert server.alive()
        yield server
    finally:
        subprocess.run(["kill", str(server.pid)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KDOCTOR_SETUP_YES")}
    return {**env, **extra}


def test_make_try_leaves_a_running_nginx_running(own_nginx: OwnNginx) -> None:
    proc = subprocess.run(
        [str(REPO / "hack" / "try"), "--qps", "50", "--duration", "1s"],
        cwd=REPO,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PASS" in proc.stdout, proc.stdout
    assert own_nginx.alive(), "hack/try stopped an nginx it did not start"


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """hack/setup copied beside the repo's setup.cfg and pyproject.toml, with a venv stamp
    that says the venv is up to date, and stand-ins for dpkg-query (nothing installed) and
    apt-get (logs its arguments and what policy-rc.d says about starting nginx)."""
    repo = tmp_path / "repo"
    (repo / "hack").mkdir(parents=True)
    shutil.copy2(REPO / "hack" / "setup", repo / "hack" / "setup")
    for f in ("setup.cfg", "pyproject.toml"):
        shutil.copy2(REPO / f, repo / f)
    stamp = subprocess.run(
        "cat setup.cfg pyproject.toml | sha256sum | cut -c1-16",
        shell=True,
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    (repo / ".venv" / f".installed-{stamp}").touch()
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (fake / "apt-get").write_text(
        "#!/bin/sh\n"
        'echo "apt-get $*" >>"$APT_LOG"\n'
        'case "$*" in *install*)\n'
        '  if [ -x "$KDOCTOR_POLICY_RC_D" ]; then "$KDOCTOR_POLICY_RC_D" nginx start;'
        ' echo "policy-rc.d says $?" >>"$APT_LOG"; else echo "no policy-rc.d" >>"$APT_LOG"; fi ;;\n'
        "esac\n"
    )
    for f in fake.iterdir():
        f.chmod(0o755)
    return tmp_path


def setup_run(
    base: Path, *args: str, policy: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(base / "repo" / "hack" / "setup"), *args],
        env=clean_env(
            PATH=f"{base / 'fakebin'}:{os.environ['PATH']}",
            APT_LOG=str(base / "apt.log"),
            KDOCTOR_POLICY_RC_D=str(policy or base / "policy-rc.d"),
            **env,
        ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nothing_is_installed_without_consent(fake_repo: Path) -> None:
    proc = setup_run(fake_repo, "--target", "try")
    assert proc.returncode == 1
    assert "will install these Debian packages: nginx-light\n" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "hack/setup: not installing without consent: run hack/setup --yes "
        "(or set CI=true or KDOCTOR_SETUP_YES=1)"
    )
    assert not (fake_repo / "apt.log").exists()


@pytest.mark.parametrize(
    ("args", "env"), [(["--yes"], {}), ([], {"CI": "true"}), ([], {"KDOCTOR_SETUP_YES": "1"})]
)
def test_consent_installs_only_the_targets_packages_with_daemons_held_back(
    fake_repo: Path, own_nginx: OwnNginx, args: list[str], env: dict[str, str]
) -> None:
    proc = setup_run(fake_repo, "--target", "unit", *args, **env)
    assert proc.returncode == 0, proc.stderr
    log = (fake_repo / "apt.log").read_text().splitlines()
    install = next(line for line in log if " install " in line).split()
    assert install[-8:] == [
        "nginx-light",
        "unbound",
        "nsd",
        "dnsperf",
        "wrk",
        "openssl",
        "ca-certificates",
        "procps",
    ]
    assert "chromium" not in install and "containerd" not in install
    assert "policy-rc.d says 101" in log  # no daemon may start during the install
    assert not (fake_repo / "policy-rc.d").exists()  # and it is gone afterwards
    assert "setup: apt " in proc.stderr and "setup: venv " in proc.stderr
    assert own_nginx.alive()


def test_a_policy_rc_d_of_the_machine_is_left_as_it_was(fake_repo: Path) -> None:
    policy = fake_repo / "own-policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    proc = setup_run(fake_repo, "--target", "try", "--yes", policy=policy)
    assert proc.returncode == 0, proc.stderr
    assert "policy-rc.d says 101" in (fake_repo / "apt.log").read_text()
    assert policy.read_text() == "#!/bin/sh\nexit 101\n"


def test_bad_arguments_exit_2_with_one_line(fake_repo: Path) -> None:
    for args in (["--target", "everything"], ["--frobnicate"], ["--target"]):
        proc = setup_run(fake_repo, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
