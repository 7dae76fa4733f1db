"""maasrec benchmarks (not part of the installed package). See benchmarks/README.md."""
