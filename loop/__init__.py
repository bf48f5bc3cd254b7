"""The local loop: the whole system on loopback, as `make demo` runs it (the end-to-end tests
and benchmarks run it too). Stand-ins that only tests use live in `tests/doubles/`."""
