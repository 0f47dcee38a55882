"""One module per contender; each defines ``Contender`` (see ``benchmarks.common.Contender``)."""
