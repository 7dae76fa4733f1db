"""maasrec benchmarks (not part of the installed package). See benchmarks/README.md.

``python -m benchmarks run quick`` runs the quick suite: maasrec side by side with the
peer libraries (implicit, LensKit, Cornac, RecBole; each in its own virtual environment
made by ``benchmarks/peers/setup_<library>.sh``) on splits made once by maasrec, every
list scored by ``maasrec.metrics.evaluate_lists``.
"""
