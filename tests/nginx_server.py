"""A real nginx running the shipped site file (deploy/nginx/livehub.conf) for a test, and its certificate.

The site file is what an operator installs, with concrete placeholder values (ports 80/443, certbot's
certificate paths, /opt/livehub, /var/lib/livehub, nodes on 8081/8082). `render_site` swaps each for the
test's own and fails if one is no longer in the file, so the file and this test cannot drift apart.

nginx runs from the machine's binary (Debian's `nginx` package, which `.ci/run` installs), never as the
system's service: its own prefix, config, pid file, logs and temp paths in a temporary directory,
`daemon off`, loopback ports. As root its workers run as `nobody` (the master reads the certificate and
opens the logs first); otherwise they run as the caller.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tls_helpers import Certificate

from conftest import ROOT
from redis_server import free_port

SITE = ROOT / "deploy" / "nginx" / "livehub.conf"
MIME_TYPES = Path("/etc/nginx/mime.types")


def nginx_executable() -> str | None:
    return (
        os.environ.get("LIVEHUB_NGINX")
        or shutil.which("nginx")
        or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    )


def render_site(
    *, http_port: int, https_port: int, nodes: list[int], cert: Certificate, data_dir: Path, log_dir: Path
) -> str:
    """deploy/nginx/livehub.conf with the test's ports, certificate, nodes and directories."""
    text = "\n".join(line for line in SITE.read_text().splitlines() if not line.lstrip().startswith("#"))
    a, b = nodes
    swaps = [
        # (what the shipped file says, what the test needs, how many times it is there)
        ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        ("listen [::]:80;", "", 1),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1),
        ("listen [::]:443 ssl http2;", "", 1),
        # The browser's port is not 443 here: the redirect keeps the test's.
        ("return 301 https://$host$request_uri;", f"return 301 https://$host:{https_port}$request_uri;", 1),
        ("/etc/letsencrypt/live/shop.example.com/fullchain.pem", str(cert.cert), 1),
        ("/etc/letsencrypt/live/shop.example.com/privkey.pem", str(cert.key), 1),
        ("server 127.0.0.1:8081;", f"server 127.0.0.1:{a};", 2),
        ("server 127.0.0.1:8082;", f"server 127.0.0.1:{b};", 2),
        ("alias /opt/livehub/static/;", f"alias {ROOT / 'static'}/;", 1),
        ("root /var/lib/livehub;", f"root {data_dir};", 1),
        ("access_log /var/log/nginx/livehub.access.log livehub;", f"access_log {log_dir}/access.log livehub;", 1),
    ]
    for shipped, ours, count in swaps:
        assert text.count(shipped) == count, f"{SITE} no longer has {shipped!r} {count} time(s): update this test"
        text = text.replace(shipped, ours)
    return text


class Nginx:
    """nginx in the foreground on loopback ports, serving the rendered site; `stop()` ends it."""

    def __init__(self, directory: Path, site: str, *, https_port: int, http_port: int):
        self.executable = nginx_executable()
        self.dir = directory
        self.https_port, self.http_port = https_port, http_port
        self.url = f"https://127.0.0.1:{https_port}"
        self.http_url = f"http://127.0.0.1:{http_port}"
        self._process: subprocess.Popen | None = None
        (directory / "livehub.conf").write_text(site)
        (directory / "nginx.conf").write_text(self._main_config())

    def _main_config(self) -> str:
        temp = self.dir / "temp"
        temp.mkdir()
        # As root the master switches its workers to nobody, who must write the temp paths.
        worker_user = ""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            worker_user = f"user nobody {_group_name(nobody.pw_gid)};"
            os.chown(temp, nobody.pw_uid, nobody.pw_gid)
        mime = (
            f"include {MIME_TYPES};"
            if MIME_TYPES.exists()
            else "types { text/css css; text/javascript js; image/webp webp; }"
        )
        return f"""
{worker_user}
daemon off;
master_process on;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {self.dir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.dir}/livehub.conf;
}}
"""

    def _command(self, *extra: str) -> list[str]:
        # -e: even the errors before the config is read go to our log, not /var/log/nginx.
        return [
            self.executable,
            "-p",
            f"{self.dir}/",
            "-c",
            str(self.dir / "nginx.conf"),
            "-e",
            str(self.dir / "error.log"),
            *extra,
        ]

    def check(self) -> None:
        """`nginx -t`: the rendered config is valid (and the certificate loads)."""
        result = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr + self.errors()

    def start(self) -> "Nginx":
        self.check()
        self._process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not all(_listens(port) for port in (self.https_port, self.http_port)):
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._process.returncode}:\n{self.errors()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen within 10 s:\n{self.errors()}")
            time.sleep(0.02)
        return self

    def errors(self) -> str:
        log = self.dir / "error.log"
        return log.read_text() if log.exists() else ""

    def access_log(self) -> str:
        log = self.dir / "access.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        # SIGTERM: nginx's fast stop (a graceful one would wait for open websockets).
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def ports() -> tuple[int, int]:
    """Two free loopback ports (https, http)."""
    return free_port(), free_port()
