//! Frame builders shared by the benchmarks.
