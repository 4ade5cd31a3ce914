"""Blockwise segmentation of OME-Zarr pyramids: labels, measurements and a summary per run."""

from tiler.segmentation.params import ParameterError, describe_methods, validate_params
from tiler.segmentation.run import DEFAULT_MEMORY_BUDGET, SegmentationResult, segment_pyramid

__all__ = ["DEFAULT_MEMORY_BUDGET", "ParameterError", "SegmentationResult", "describe_methods",
           "segment_pyramid", "validate_params"]
