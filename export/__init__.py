"""PyTorch → ONNX export, its verification, precision conversion and inspection (docs/deployment.md).

Names are imported on first use (PEP 562), so `import nedr.export.<module>` of a torch-free module
(metadata, ops, inspection, the TensorRT build) does not pull in torch through this package.
"""
from nedr.lazy import lazy_attributes

_NAMES = {
    "ExportError": "metadata", "export_onnx": "onnx_export", "export_checkpoint": "onnx_export",
    "read_metadata": "metadata", "file_sha256": "metadata",
    "check_ops": "ops", "TRT_SUPPORTED_OPS": "ops", "FORBIDDEN_OPS": "ops",
    "verify_onnx": "verify", "VerifyReport": "verify",
    "convert_fp16": "fp16", "fp16_agreement": "fp16", "fp32_islands": "islands", "FP16Report": "fp16",
    "inspect_onnx": "inspection", "format_inspection": "inspection",
    "Profile": "profiles", "ProfileError": "profiles", "make_profile": "profiles", "static_profile": "profiles",
    "parse_hw": "profiles", "fits": "profiles",
    "ManifestError": "engine_manifest", "EngineMismatchError": "engine_manifest", "BuildOptions": "engine_manifest",
    "load_manifest": "engine_manifest", "check_manifest": "engine_manifest", "require_compatible": "engine_manifest",
    "rebuild_command": "engine_manifest", "onnx_precision": "engine_manifest", "detect_precision": "engine_manifest",
    "TensorRTUnavailable": "tensorrt_build", "EngineBuildError": "tensorrt_build", "build_engine": "tensorrt_build",
    "load_tensorrt": "tensorrt_build", "trt_lane": "tensorrt_build", "engine_layers": "tensorrt_build",
    "check_engine_here": "tensorrt_build", "build_planned": "tensorrt_build",
    "BuildPlan": "build_plan", "plan_build": "build_plan",
    "export_verified": "verified_export", "export_fast_verified": "verified_export",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_attributes(__name__, _NAMES)
