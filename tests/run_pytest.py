"""Bazel's py_test entry point: runs pytest on the files given as arguments."""

import os
import sys

import pytest

if __name__ == "__main__":
    # Run from the runfiles root so `tests/...` paths and `pipelines` resolve.
    os.chdir(os.path.join(os.environ.get("TEST_SRCDIR", "."), os.environ.get("TEST_WORKSPACE", "tflm")))
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
