"""The compiled part of the package: the TURN relay's UDP fast path (``ct/turn/_fastpath.c``).

Metadata lives in pyproject.toml. The extension is optional: without a C compiler and
Python's headers the build goes on without it and the relay uses its Python data path.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Builds the extension when it can; a failure leaves the pure-Python fallback."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler, no headers
            print(f"warning: ct.turn._fastpath not built ({e}); the relay uses its Python "
                  "data path")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            print(f"warning: {ext.name} not built ({e}); the relay uses its Python data path")


setup(
    ext_modules=[Extension("ct.turn._fastpath", ["ct/turn/_fastpath.c"],
                           extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
