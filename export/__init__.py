"""PyTorch → ONNX export, its verification, precision conversion and inspection (toolkit.md)."""
from .fp16 import FP16Report, convert_fp16, fp16_agreement, fp32_islands
from .inspection import format_inspection, inspect_onnx
from .onnx_export import ExportError, export_checkpoint, export_onnx, read_metadata
from .ops import FORBIDDEN_OPS, TRT_SUPPORTED_OPS, check_ops
from .verify import VerifyReport, verify_onnx

__all__ = [
    "ExportError", "export_onnx", "export_checkpoint", "read_metadata",
    "check_ops", "TRT_SUPPORTED_OPS", "FORBIDDEN_OPS",
    "verify_onnx", "VerifyReport",
    "convert_fp16", "fp16_agreement", "fp32_islands", "FP16Report",
    "inspect_onnx", "format_inspection",
]
