"""The ``xl`` stand-in's modules (the program is ``../bin/xl``, whose docstring says what it
does; each module cites the libxl/xl 4.17 code it follows). Run under the system python3
with ``tests/sandbox/fakes`` first on sys.path, so ``xlstate`` and ``xswire`` import as
top-level modules, as in the other stand-ins."""
