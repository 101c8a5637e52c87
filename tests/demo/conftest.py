"""Helpers to run a real gradio app in a subprocess and talk to it over HTTP."""
import os
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args, timeout: float = 240.0):
    """Start ``python SCRIPT --port N ARGS...`` from the repository root; returns (process, gradio_client.Client)."""
    from gradio_client import Client

    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, args[0], "--port", str(port)] + list(args[1:]), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            return proc, Client(url, verbose=False)
        except OSError:
            time.sleep(0.5)
        except Exception:  # server up but not ready yet
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app did not start on {url} within {timeout} s:\n{proc.stdout.read()}")


def stop_app(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def gradio_app():
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    started = []

    def start(args):
        proc, client = start_app(args)
        started.append(proc)
        return client

    yield start
    for p in started:
        stop_app(p)
