"""Shared by the TensorRT build, `nedr build` and `nedr inspect` tests: a fake `tensorrt` module,
a sample engine-inspector answer and an in-process `nedr` with the two subcommands."""
from __future__ import annotations

import argparse
import json
import sys
import types


class FakeTRT(types.ModuleType):
    """Records what the build shell asks of TensorRT; shaped like the 10.x/11.x Python API."""

    def __init__(self, version="10.3.0", dla_cores=0, build_ok=True, parse_ok=True, dla_capable=None,
                 flag_enum=True, engine_json=None):
        super().__init__("tensorrt")
        self.__version__ = version
        self.__file__ = "<fake tensorrt>"
        self.calls: list[tuple] = []
        fake = self
        self.dla_capable = dla_capable or (lambda name: True)

        if flag_enum:
            self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = types.SimpleNamespace(VERSION_COMPATIBLE="VERSION_COMPATIBLE", GPU_FALLBACK="GPU_FALLBACK")
        self.DeviceType = types.SimpleNamespace(GPU="GPU", DLA="DLA")
        self.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")
        self.LayerInformationFormat = types.SimpleNamespace(JSON="JSON")

        class ILogger:
            Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

            def __init__(self):
                pass

        class IProgressMonitor:
            def __init__(self):
                pass

        class Tensor:
            def __init__(self, name, shape):
                self.name, self.shape = name, shape

        class Layer:
            def __init__(self, name):
                self.name = name

        class Network:
            def __init__(self, flags):
                self.flags = flags
                self.inputs = []
                self.layers = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return self.inputs[i]

            @property
            def num_layers(self):
                return len(self.layers)

            def get_layer(self, i):
                return self.layers[i]

        class OnnxParser:
            def __init__(self, network, logger):
                self.network = network
                self.num_errors = 0 if parse_ok else 2

            def parse_from_file(self, path):
                fake.calls.append(("parse_from_file", path))
                if not parse_ok:
                    return False
                import onnx
                model = onnx.load(path)
                for value in model.graph.input:
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
                    self.network.inputs.append(Tensor(value.name, tuple(dims)))
                self.network.layers = [Layer(n.name or f"{n.op_type}_{i}") for i, n in enumerate(model.graph.node)]
                return True

            def get_error(self, i):
                return f"In node 3 (Conv): unsupported thing {i}"

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                fake.calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

        class TimingCache:
            def __init__(self, blob):
                self.blob = bytes(blob)

            def serialize(self):
                return b"CACHE:" + self.blob

        class Config:
            def __init__(self):
                self.flags = set()
                self.progress_monitor = None
                self.cache = None

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("set_memory_pool_limit", pool, size))

            def add_optimization_profile(self, profile):
                fake.calls.append(("add_optimization_profile",))

            def create_timing_cache(self, blob):
                fake.calls.append(("create_timing_cache", bytes(blob)))
                return TimingCache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

            def set_flag(self, flag):
                self.flags.add(flag)

            def can_run_on_DLA(self, layer):
                return fake.dla_capable(layer.name)

        class Builder:
            def __init__(self, logger):
                self.logger = logger
                self.num_DLA_cores = dla_cores

            def create_network(self, *args):
                fake.calls.append(("create_network", args))
                return Network(args)

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build_serialized_network",))
                mon = config.progress_monitor
                if mon is not None:
                    mon.phase_start("Building engine", None, 3)
                    for step in range(3):
                        assert mon.step_complete("Building engine", step) is True
                    mon.phase_finish("Building engine")
                if not build_ok:
                    self.logger.log(ILogger.Severity.ERROR, "[myelin] out of workspace\nmore detail")
                    return None
                return bytearray(b"PLAN-" + fake.__version__.encode())

        class Engine:
            def create_engine_inspector(self):
                return types.SimpleNamespace(get_engine_information=lambda fmt: engine_json)

        class Runtime:
            def __init__(self, logger):
                self.engine_host_code_allowed = False
                fake.runtime = self

            def deserialize_cuda_engine(self, blob):
                return Engine()

        self.ILogger, self.IProgressMonitor, self.OnnxParser = ILogger, IProgressMonitor, OnnxParser
        self.Builder, self.Runtime = Builder, Runtime

    def called(self, name):
        return [c for c in self.calls if c[0] == name]


def _install(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


ENGINE_INFO_10 = json.dumps({"Layers": [
    {"Name": "conv1", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "y", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "TacticName": "sm80_xmma"},
    {"Name": "{ForeignNode[a...b]}", "LayerType": "DLA", "Outputs": [{"Name": "z", "Format/Datatype": "Int8 NC/32HW32"}]},
], "Bindings": ["hazy", "clean"]})


def _parser():
    """`nedr` with the two subcommands (registered here until nedr/commands/__init__.py lists them)."""
    from nedr.commands import build, inspect

    parser = argparse.ArgumentParser(prog="nedr")
    sub = parser.add_subparsers(dest="command", required=True)
    build.configure(sub.add_parser("build", help=build.HELP))
    inspect.configure(sub.add_parser("inspect", help=inspect.HELP))
    return parser


def _nedr(argv, capsys):
    from nedr.cli import _run

    code = _run(_parser(), argv)
    out = capsys.readouterr()
    return code, out.out, out.err
