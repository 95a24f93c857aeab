"""A real Triton Inference Server on 127.0.0.1 for the triton backend tests.

The server is the `tritonserver` binary inside the nvidia-pytriton wheel (Triton 2.51 in
pytriton 0.7.0, CPU-only here), run directly, without pytriton's Python API. The wheel carries
Triton's Python backend only, so the model repository is the one `nedr export --triton` writes
for an ONNX file with its `platform: "onnxruntime_onnx"` line swapped for `backend: "python"`
and a `model.py` beside `model.onnx` that runs it in an ONNX Runtime session: the served
inputs, outputs, batching and instance group are exactly what nedr exports.

pytriton pins numpy < 2, so it lives in a venv of its own: `$NEDR_PYTRITON_VENV`, else
`.venv-pytriton` at the repository root (`.ci/run` makes it):

    python3 -m venv .venv-pytriton && .venv-pytriton/bin/pip install nvidia-pytriton==0.7.0 onnxruntime

The Python backend's stub process embeds that venv's libpython: LD_LIBRARY_PATH gets the venv
Python's LIBDIR (pyenv and other builds keep libpython off the loader path) and the wheel's
bundled libraries, and PATH starts with the venv's bin, from which the embedded interpreter
finds its prefix and so the venv's site-packages (as pytriton itself sets it up).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from live_servers import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_ENV = "NEDR_PYTRITON_VENV"
DEFAULT_VENV = ROOT / ".venv-pytriton"
INSTALL = "python3 -m venv {venv} && {venv}/bin/pip install nvidia-pytriton==0.7.0 onnxruntime"

PROBE = r"""
import importlib.util, json, sys, sysconfig
spec = importlib.util.find_spec("pytriton")
print(json.dumps({"pytriton": spec.submodule_search_locations[0] if spec else None,
                  "version": "%d.%d" % sys.version_info[:2], "libdir": sysconfig.get_config_var("LIBDIR"),
                  "missing": [m for m in ("numpy", "onnxruntime") if importlib.util.find_spec(m) is None]}))
"""

MODEL_PY = '''"""Triton Python backend model: the version folder's model.onnx in an ONNX Runtime session."""
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy()
            outs = self.session.run(self.outputs, {self.input: x})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, o) for n, o in zip(self.outputs, outs)]))
        return responses
'''


@dataclass
class Pytriton:
    """Where the wheel's server pieces are, for one venv."""

    venv: Path
    server: Path        # bin/tritonserver
    backend_dir: Path   # backends/ (python backend; the stub for this Python is copied in per server)
    stub: Path          # python_backend_stubs/<X.Y>/triton_python_backend_stub
    cache_dir: Path
    ld_path: str


def find_pytriton() -> tuple[Pytriton | None, str]:
    """The pytriton install to use and "", or None and why there is none."""
    venv = Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)
    python = venv / "bin" / "python"
    hint = f"set {VENV_ENV} to a venv that has it, or: {INSTALL.format(venv=venv)}"
    if not python.exists():
        return None, f"no pytriton venv at {venv} (nvidia-pytriton bundles the tritonserver binary); {hint}"
    try:
        probe = json.loads(subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=60,
                                          check=True).stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return None, f"{python} does not run: {exc}"
    if probe["pytriton"] is None:
        return None, f"nvidia-pytriton is not installed in {venv}; {hint}"
    if probe["missing"]:
        return None, f"{venv} lacks {', '.join(probe['missing'])} (the test model runs ONNX Runtime); {hint}"
    root = Path(probe["pytriton"]) / "tritonserver"
    found = Pytriton(venv, root / "bin" / "tritonserver", root / "backends",
                     root / "python_backend_stubs" / probe["version"] / "triton_python_backend_stub", root / "caches",
                     ":".join(p for p in (str(Path(probe["pytriton"]).parent / "nvidia_pytriton.libs"), probe["libdir"]) if p))
    for path in (found.server, found.stub):
        if not path.is_file():
            return None, f"{path} is missing from the pytriton install in {venv} (no stub for Python {probe['version']}?)"
    return found, ""


def python_backend_repository(repo: Path, onnx_path: Path, name: str = "nedr", max_batch_size: int | None = None,
                              edit=None) -> Path:
    """`nedr export --triton`'s repository for `onnx_path`, served by the Python backend (module
    docstring). `edit(text) -> text` changes the config further (mismatch tests)."""
    from nedr.export.triton import write_repository

    written = write_repository(repo, onnx_path, name=name, instance="cpu", max_batch_size=max_batch_size)
    return serve_with_python_backend(written.model_dir, edit)


def serve_with_python_backend(model_dir: Path, edit=None) -> Path:
    """A model folder that `nedr export --triton` wrote for an ONNX file (config.pbtxt + 1/model.onnx),
    switched in place to the Python backend: the platform line becomes `backend: "python"` and
    1/model.py runs 1/model.onnx in ONNX Runtime; everything else of the config stays as exported."""
    config = Path(model_dir) / "config.pbtxt"
    text = config.read_text().replace('platform: "onnxruntime_onnx"', 'backend: "python"')
    assert 'backend: "python"' in text and (Path(model_dir) / "1" / "model.onnx").is_file(), model_dir
    config.write_text(edit(text) if edit else text)
    (Path(model_dir) / "1" / "model.py").write_text(MODEL_PY)
    return Path(model_dir)


class TritonServer(ServerProcess):
    """tritonserver on 127.0.0.1 (HTTP and gRPC on free ports, metrics off) serving `repo`; can be
    stopped (SIGKILL) and started again on the same ports."""

    def __init__(self, pytriton: Pytriton, repo: Path, work: Path) -> None:
        self.pt, self.repo, self.work = pytriton, Path(repo), Path(work)
        self.http_port, self.grpc_port = free_port(), free_port()
        self.http_url, self.grpc_url = f"http://127.0.0.1:{self.http_port}", f"grpc://127.0.0.1:{self.grpc_port}"
        self.shm_prefix = f"nedr_test_{uuid.uuid4().hex[:8]}_"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        backends = self.work / "backends"
        shutil.copytree(self.pt.backend_dir, backends, dirs_exist_ok=True)
        shutil.copy(self.pt.stub, backends / "python" / "triton_python_backend_stub")

    def start(self, wait: float = 60.0) -> "TritonServer":
        self.starts += 1
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(filter(None, (self.pt.ld_path, os.environ.get("LD_LIBRARY_PATH")))),
               "PATH": f"{self.pt.venv / 'bin'}:{os.environ.get('PATH', '')}"}
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)
        log = open(self.log_path(self.starts), "wb")
        cmd = [str(self.pt.server), f"--model-repository={self.repo}", f"--backend-directory={self.work / 'backends'}",
               f"--cache-directory={self.pt.cache_dir}", "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}", "--allow-metrics=false",
               "--exit-timeout-secs=2", f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
               "--log-verbose=0"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tritonserver was not ready within {wait:g} s: {self.log_tail()}")

    def stop(self) -> None:
        super().stop()
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):  # a killed server leaves its regions
            region.unlink(missing_ok=True)

    def log_path(self, n: int) -> Path:
        return self.work / f"tritonserver-{n}.log"

    def log_tail(self) -> str:
        path = self.log_path(self.starts)
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""
