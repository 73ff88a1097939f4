"""Stage 7, publishing: Parquet views, the dataset card, the build report, local versions and the Hub."""
