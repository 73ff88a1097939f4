"""Stage 4, near-duplicate removal and decontamination: MinHash kernels, clustering, version indexes, benchmarks."""
