"""Analysis shared by the benchmarks: pure functions over their results, no command line (every module
directly in benchmarks/ is a benchmark that answers --help).

- intervals   seed-and-item bootstrap intervals for "method A minus method B"
"""
