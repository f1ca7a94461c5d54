"""asyncgw: asynchronous APIs — submit over HTTP, run on workers, fetch or receive the result."""

from asyncgw.result import Result

__all__ = ["Result", "__version__"]
__version__ = "0.1.0"
