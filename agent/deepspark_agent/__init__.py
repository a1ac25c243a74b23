"""DeepSpark Bench host agent: runs training workloads and measures six dimensions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepspark")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
