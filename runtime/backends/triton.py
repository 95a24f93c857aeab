"""The `triton` backend: inference on a Triton Inference Server, over gRPC or HTTP (tritonclient).

`nedr run --backend triton --url grpc://HOST:8001 [--triton-model nedr]` sends each batch to the
model that `nedr export --triton REPO` wrote (any model with nedr's I/O works: one FP32 input
N×3×H×W, an FP32 `clean` output of the same shape, optionally `transmission` N×1×H×W, which
temporal stabilisation uses). Everything else of `nedr run` (sources, sinks, fast mode,
stabilisation, multi-stream batching) runs here as with a local backend; Triton adds its own
dynamic batching across clients on top.

Activation checks, in order, each failure a one-line `BackendError`: tritonclient importable →
server reachable (the TCP probe of `nedr.runtime.sources.why_unreachable` says why not) → the
model known and READY (else the models the server does have) → its inputs and outputs match
nedr's contract (data types, channels, batch limit from `max_batch_size`).

While running, an error that means the server went away or is still coming back (connection
refused or reset, gRPC UNAVAILABLE, the model not loaded yet) is retried with backoff (0.5, 1, 2,
4, 8, 8, ... s), each retry one stderr line, on a new client, until the call goes through or
`max_retries` failed in a row; a request the server rejects (wrong shape, batch too large, a
model error) fails at once. `request_stop()` (a stop signal) ends the waiting.

tritonclient is imported when the backend is activated, never at import time.
"""
from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from nedr.contract import OUTPUT_CLEAN, OUTPUT_TRANSMISSION, TRITON_MODEL_NAME
from nedr.errors import first_line

from ..errors import BackendError
from ..sources import log_stderr, why_unreachable
from . import Backend, Output

DEFAULT_MODEL = TRITON_MODEL_NAME  # what `nedr export --triton` names the model (nedr.export.triton.DEFAULT_NAME)
DEFAULT_PORTS = {"grpc": 8001, "grpcs": 8001, "http": 8000, "https": 8000}
INSTALL_HINT = "pip install 'tritonclient[grpc,http]'"
# Status codes of tritonclient errors that mean "not there right now": the server restarting, the
# model still loading. Others (INVALID_ARGUMENT / 400: shape, batch size; INTERNAL / 500) are final.
TRANSIENT_STATUS = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND", "StatusCode.DEADLINE_EXCEEDED",
                    "StatusCode.CANCELLED", "404", "502", "503", "504"}
TRANSIENT_TEXT = ("not ready", "unknown model", "socket closed", "connection reset", "connection refused")


@dataclass(frozen=True)
class TritonURL:
    """A Triton endpoint: protocol (grpc or http), host, port and TLS."""

    protocol: str
    host: str
    port: int
    ssl: bool

    @property
    def address(self) -> str:
        """host:port, what tritonclient's clients take."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}{'s' if self.ssl else ''}://{self.address}"


def parse_url(url: str) -> TritonURL:
    """`grpc://HOST[:8001]`, `http://HOST[:8000]` (also grpcs://, https://) → TritonURL; BackendError otherwise."""
    text = (url or "").strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        raise BackendError(f"--url {text!r}: expected grpc://HOST:8001 or http://HOST:8000 (grpcs://, https:// "
                           "for TLS), the Triton server's gRPC or HTTP endpoint")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise BackendError(f"--url {text!r}: the port is not a number") from None
    return TritonURL(scheme.rstrip("s"), parts.hostname, int(port), scheme.endswith("s"))


@dataclass(frozen=True)
class ModelIO:
    """What nedr needs to know of a served model, from its metadata and config."""

    input_name: str
    clean_name: str
    transmission_name: str | None
    static_hw: tuple[int, int] | None
    max_batch: int | None          # the most frames one request may carry (None: no limit)


def _dims(tensor: dict) -> list[int]:
    return [int(d) for d in tensor.get("shape", [])]


def check_model_io(model: str, metadata: dict, max_batch_size: int) -> ModelIO:
    """The model's I/O against nedr's contract (pure: tested without a server). `metadata` is the
    KServe model metadata (inputs/outputs with name, datatype and shape, batch dimension included);
    `max_batch_size` from the model config (0: no Triton batching, the shape is the full shape)."""
    inputs, outputs = metadata.get("inputs") or [], metadata.get("outputs") or []
    if len(inputs) != 1:
        raise BackendError(f"Triton model {model!r} has {len(inputs)} inputs ({', '.join(i['name'] for i in inputs)}); "
                           "nedr sends one, hazy FP32 N×3×H×W")
    spec = inputs[0]
    shape = _dims(spec)
    if spec.get("datatype") != "FP32":
        raise BackendError(f"Triton model {model!r} takes {spec['name']} as {spec.get('datatype')}; nedr sends FP32 "
                           "(serve an export with FP32 I/O: `nedr export --triton`, --precision fp16 keeps FP32 I/O)")
    if len(shape) != 4 or shape[1] not in (3, -1):
        raise BackendError(f"Triton model {model!r} takes {spec['name']} of shape {shape} (batch included); nedr sends "
                           "N×3×H×W RGB")
    names = [o["name"] for o in outputs]
    if not names:
        raise BackendError(f"Triton model {model!r} has no outputs")
    clean = OUTPUT_CLEAN if OUTPUT_CLEAN in names else names[0]
    transmission = OUTPUT_TRANSMISSION if OUTPUT_TRANSMISSION in names else None
    for out in outputs:
        if out["name"] not in (clean, transmission):
            continue
        want = 3 if out["name"] == clean else 1
        dims = _dims(out)
        if out.get("datatype") != "FP32" or len(dims) != 4 or dims[1] not in (want, -1):
            raise BackendError(f"Triton model {model!r} output {out['name']} is {out.get('datatype')} {dims}; nedr "
                               f"expects FP32 N×{want}×H×W")
    static = (shape[2], shape[3]) if shape[2] > 0 and shape[3] > 0 else None
    limit = int(max_batch_size) if max_batch_size > 0 else (shape[0] if shape[0] > 0 else None)
    return ModelIO(spec["name"], clean, transmission, static, limit)


def transient_reason(exc: BaseException) -> str | None:
    """Why `exc` looks like a server that is away for now (restart, model loading), or None when it
    is an answer that retrying would not change."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (OSError, http.client.HTTPException)):  # the HTTP client's socket and protocol errors
        return first_line(exc)
    status = getattr(exc, "status", None)
    status = str(status() if callable(status) else status)
    text = first_line(exc)
    if "connection refused" in text.lower():  # gRPC's long "failed to connect to all addresses; ..." form
        return "connection refused"
    if status in TRANSIENT_STATUS or any(t in text.lower() for t in TRANSIENT_TEXT):
        return text
    return None


def _load_client(protocol: str):
    """tritonclient.grpc or tritonclient.http, as a BackendError with the pip line when missing."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except (ImportError, RuntimeError) as exc:  # tritonclient.http raises RuntimeError without its extra
        raise BackendError(f"the triton backend needs tritonclient with {protocol} support ({first_line(exc)}): "
                           f"{INSTALL_HINT}") from None
    return module


class TritonBackend(Backend):
    """A model on a Triton server. `url`: grpc://HOST:8001 or http://HOST:8000; `triton_model`: its
    name (default "nedr"); `model_version`: "" for the server's choice; `timeout`: seconds for
    connecting and for each check at activation; `request_timeout`: seconds one inference may take
    (None: no limit); `max_retries`: failed retries in a row before giving up (None: keep trying);
    `log`: where retry lines go (stderr)."""

    name = "triton"

    def __init__(self, model=None, url: str | None = None, triton_model: str = DEFAULT_MODEL, model_version: str = "",
                 timeout: float = 10.0, request_timeout: float | None = None, max_retries: int | None = None,
                 backoff: float = 0.5, backoff_max: float = 8.0, log: Callable[[str], None] = log_stderr) -> None:
        super().__init__()
        if model is not None:
            raise BackendError(f"the triton backend runs the model the server holds, not a local file ({model}); "
                               "name the served model with --triton-model")
        if not url:
            raise BackendError("the triton backend needs the server: --url grpc://HOST:8001 or --url http://HOST:8000")
        self.url = parse_url(url)
        self.model_name, self.model_version = triton_model or DEFAULT_MODEL, str(model_version or "")
        self.timeout, self.request_timeout = float(timeout), request_timeout
        self.max_retries, self.backoff, self.backoff_max = max_retries, backoff, backoff_max
        self.log = log
        self.retries = 0          # retries over the whole run
        self.down_s = 0.0         # time spent waiting for the server
        self._stop = False
        self._client = None

    # -- lifetime
    def _activate(self) -> None:
        self._module = _load_client(self.url.protocol)
        self._stop = False
        self._client = self._connect()
        try:
            self._check_server()
            self._check_model()
        except BaseException:
            self._close_client()
            raise

    def _deactivate(self) -> None:
        self._close_client()

    def _connect(self):
        if self.url.protocol == "grpc":
            return self._module.InferenceServerClient(self.url.address, ssl=self.url.ssl)
        return self._module.InferenceServerClient(self.url.address, ssl=self.url.ssl, connection_timeout=self.timeout,
                                                  network_timeout=self.request_timeout or 24 * 3600.0)

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a client of a dead server may fail to close; nothing to keep
                pass

    def _json(self, call: str, *args):
        """A metadata call on either client as plain JSON-like dicts (gRPC gives protobufs otherwise)."""
        fn = getattr(self._client, call)
        if self.url.protocol == "grpc":
            return fn(*args, as_json=True, client_timeout=self.timeout)
        return fn(*args)

    def _check_server(self) -> None:
        start = time.perf_counter()
        try:
            live = self._client.is_server_live(**({"client_timeout": self.timeout} if self.url.protocol == "grpc" else {}))
        except Exception as exc:  # noqa: BLE001 - every client failure becomes one line
            elapsed = time.perf_counter() - start
            reason = why_unreachable(f"{'https' if self.url.ssl else 'http'}://{self.url.address}", elapsed, self.timeout)
            if reason.startswith(f"{self.url.host}:{self.url.port} "):  # TCP answers: not Triton (or not this protocol)
                reason = (f"{self.url.address} answers, but not as a Triton {self.url.protocol} endpoint (Triton listens "
                          f"on 8000 for HTTP, 8001 for gRPC): {first_line(exc)[:200]}")
            raise BackendError(f"cannot reach the Triton server at {self.url} (timeout {self.timeout:g} s): {reason}") from None
        if not live:
            raise BackendError(f"the Triton server at {self.url} answers but is not live (starting up or shutting down)")
        meta = self._json("get_server_metadata")
        self.server_version = meta.get("version")

    def _check_model(self) -> None:
        name = self.model_name
        try:
            ready = self._client.is_model_ready(name, self.model_version,
                                                **({"client_timeout": self.timeout} if self.url.protocol == "grpc" else {}))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"the Triton server at {self.url} failed to say whether model {name!r} is ready: "
                               f"{first_line(exc)[:200]}") from None
        if not ready:
            raise BackendError(self._missing_model_message())
        try:
            metadata = self._json("get_model_metadata", name, self.model_version)
            config = self._json("get_model_config", name, self.model_version)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"the Triton server at {self.url} did not describe model {name!r}: {first_line(exc)[:200]}") from None
        config = config.get("config", config)  # gRPC wraps it
        io = check_model_io(name, metadata, int(config.get("max_batch_size") or 0))
        self.io = io
        self.static_hw, self.max_batch = io.static_hw, io.max_batch
        self.provides_transmission = io.transmission_name is not None
        self.output_names = [io.clean_name] + ([io.transmission_name] if io.transmission_name else [])
        self.platform = metadata.get("platform") or config.get("backend")
        self.versions = metadata.get("versions")
        self.instance_kinds = sorted({g.get("kind", "KIND_AUTO") for g in config.get("instance_group") or []})

    def _missing_model_message(self) -> str:
        """Why the model is not ready: unknown to the server (with the models it has), or known and not READY."""
        what = f"model {self.model_name!r}" + (f" version {self.model_version}" if self.model_version else "")
        try:
            index = self._json("get_model_repository_index")
        except Exception:  # noqa: BLE001 - the index is a courtesy; the model is missing either way
            index = None
        models = index.get("models", []) if isinstance(index, dict) else (index or [])
        mine = [m for m in models if m.get("name") == self.model_name]
        if index is not None and not mine:
            have = ", ".join(sorted({m.get("name", "?") for m in models})) or "none"
            return (f"the Triton server at {self.url} has no {what} (it serves: {have}); write one with "
                    f"`nedr export --triton REPO --triton-name {self.model_name}`, or pick one with --triton-model")
        states = "; ".join(f"version {m.get('version', '?')} {m.get('state', '?')}" + (f" ({m['reason']})" if m.get("reason") else "")
                           for m in mine)
        return f"{what} is not ready on the Triton server at {self.url}" + (f": {states}" if states else "")

    # -- inference
    def request_stop(self) -> None:
        """Stop retrying (called from a signal handler: it only sets a flag)."""
        self._stop = True

    def _infer(self, batch: np.ndarray) -> Output:
        attempts, delay, lost_at = 0, self.backoff, None
        while True:
            try:
                out = self._request(batch)
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted into "retry" and "final" below
                reason = transient_reason(exc)
                n, h, w = batch.shape[0], batch.shape[2], batch.shape[3]
                if reason is None:
                    raise BackendError(f"the Triton server at {self.url} rejected a {n}×3×{h}×{w} batch for model "
                                       f"{self.model_name!r}: {first_line(exc)[:240]}") from None
                if self.max_retries is not None and attempts >= self.max_retries:
                    raise BackendError(f"the Triton server at {self.url} is unreachable ({reason[:160]}) and "
                                       f"{attempts} retr{'y' if attempts == 1 else 'ies'} failed (max retries "
                                       f"{self.max_retries})") from None
                lost_at = lost_at or time.perf_counter()
                attempts += 1
                self.retries += 1
                of = f"/{self.max_retries}" if self.max_retries is not None else ""
                self.log(f"nedr: triton {self.url}: {reason[:160]}; retry {attempts}{of} in {delay:g} s")
                self._wait(delay)
                delay = min(delay * 2, self.backoff_max)
                self._close_client()  # a fresh client: gRPC's channel would otherwise wait out its own backoff
                self._client = self._connect()
                continue
            if lost_at is not None:
                gone = time.perf_counter() - lost_at
                self.down_s += gone
                self.log(f"nedr: triton {self.url}: back after {attempts} retr{'y' if attempts == 1 else 'ies'} "
                         f"({gone:.1f} s)")
            return out

    def _wait(self, seconds: float) -> None:
        """Sleep between retries in short steps, giving up (KeyboardInterrupt) once a stop is requested."""
        end = time.perf_counter() + seconds
        while not self._stop:
            left = end - time.perf_counter()
            if left <= 0:
                return
            time.sleep(min(0.1, left))
        raise KeyboardInterrupt

    def _request(self, batch: np.ndarray) -> Output:
        m = self._module
        tensor = m.InferInput(self.io.input_name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        wanted = [m.InferRequestedOutput(name) for name in self.output_names]
        extra = {"client_timeout": self.request_timeout} if self.url.protocol == "grpc" else {}
        result = self._client.infer(self.model_name, [tensor], model_version=self.model_version, outputs=wanted, **extra)
        clean = result.as_numpy(self.io.clean_name)
        t = result.as_numpy(self.io.transmission_name) if self.io.transmission_name else None
        n, _, h, w = batch.shape
        if clean is None or clean.shape != batch.shape or (t is not None and t.shape != (n, 1, h, w)):
            got = ", ".join(f"{k} {None if v is None else list(v.shape)}" for k, v in (("clean", clean), ("transmission", t))
                            if k == "clean" or self.io.transmission_name)
            raise BackendError(f"Triton model {self.model_name!r} answered a {n}×3×{h}×{w} batch with {got}; "
                               "expected clean N×3×H×W and transmission N×1×H×W")
        return Output(np.asarray(clean, np.float32), None if t is None else np.asarray(t, np.float32), None)

    @property
    def on_gpu(self) -> bool:
        return "KIND_GPU" in getattr(self, "instance_kinds", ())

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, "url": str(self.url), "protocol": self.url.protocol,
                                "model": self.model_name, "model_version": self.model_version or None,
                                "retries": self.retries, "down_s": round(self.down_s, 3)}
        if hasattr(self, "io"):
            info.update(server_version=getattr(self, "server_version", None), platform=self.platform,
                        versions=self.versions, max_batch=self.max_batch, outputs=self.output_names,
                        static_hw=self.static_hw, instance_kinds=self.instance_kinds,
                        device=f"{self.url} {self.model_name} ("
                               + (",".join(k.replace("KIND_", "").lower() for k in self.instance_kinds) or "auto") + ")")
        return info
